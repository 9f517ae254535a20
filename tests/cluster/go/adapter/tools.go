//go:build tools

// Package tools pins the main package built by tests/cluster/build.sh (prometheus-adapter,
// the real tier's custom metrics API), so `go mod tidy` keeps its dependencies in
// go.mod/go.sum. Never compiled.
package tools

import (
	_ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
)
