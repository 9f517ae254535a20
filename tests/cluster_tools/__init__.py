"""Tests that need the cluster binaries (helm, kube-apiserver's OpenAPI document), built or
fetched once by tests/cluster, but no running cluster."""
