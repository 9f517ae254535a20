//go:build tools

// Package tools pins the main package built by tests/cluster/build.sh (Prometheus, built
// with -tags remove_all_sd,enable_kubernetes_sd: of the service discoveries only
// Kubernetes, file and http), so `go mod tidy` keeps its dependencies in go.mod/go.sum.
// Never compiled.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
