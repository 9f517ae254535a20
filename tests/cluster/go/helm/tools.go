//go:build tools

// Package tools pins the main packages built by tests/cluster/build.sh, so
// `go mod tidy` keeps their dependencies in go.mod/go.sum. Never compiled.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
