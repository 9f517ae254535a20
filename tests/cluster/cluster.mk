# The e2e control plane (tests/cluster/README.md). Included by the main Makefile;
# also works alone: make -f tests/cluster/cluster.mk cluster-up
CLUSTER_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
# The bin dir of the pinned versions in the cache outside git (computed when used).
CLUSTER_BIN = $(shell bash $(CLUSTER_MK_DIR)/build.sh --print-bin-dir)
# harness.py needs only the standard library: the venv's python when there is one.
CLUSTER_PY = $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: cluster-bins cluster-up cluster-down cluster-kubeconfig

cluster-bins: ## build kube-apiserver/-controller-manager/-scheduler, kubectl, etcd, kwok(ctl), helm (cached)
	@bash $(CLUSTER_MK_DIR)/build.sh >/dev/null

cluster-up: cluster-bins ## start a kwok cluster on 127.0.0.1 (2 CPU + 2 GPU nodes); prints its kubeconfig
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py up

cluster-down: ## stop the cluster started by cluster-up; nothing is left running
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py down

cluster-kubeconfig: ## print the kubeconfig path of the running cluster
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py kubeconfig
