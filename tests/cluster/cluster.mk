# The e2e control plane (tests/cluster/README.md). Included by the main Makefile;
# also works alone: make -f tests/cluster/cluster.mk cluster-up
CLUSTER_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
# The bin dir of the pinned versions in the cache outside git (computed when used).
CLUSTER_BIN = $(shell bash $(CLUSTER_MK_DIR)/build.sh --print-bin-dir)
# harness.py needs only the standard library: the venv's python when there is one.
CLUSTER_PY = $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: cluster-bins cluster-up cluster-down cluster-kubeconfig image node-packages

cluster-bins: ## build kube-apiserver/-controller-manager/-scheduler, kubectl, etcd, kwok(ctl), helm (cached)
	@bash $(CLUSTER_MK_DIR)/build.sh >/dev/null

# REAL_NODE=1 adds the real node (root; containerd + kubelet in a netns of its own) with
# the image `make image` built, when there is one.
REAL_NODE ?= 0
cluster-up: cluster-bins $(if $(filter 1,$(REAL_NODE)),node-packages) ## start a kwok cluster on 127.0.0.1 (2 CPU + 2 GPU nodes; REAL_NODE=1: + a real node); prints its kubeconfig
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py up $(if $(filter 1,$(REAL_NODE)),--real-node \
		$$(bash $(CLUSTER_MK_DIR)/image.sh --print-archive 2>/dev/null | sed 's/^/--image /'))

image: ## build localhost/modelzoo:dev from the Dockerfile with buildah (base from Debian packages)
	@bash $(CLUSTER_MK_DIR)/image.sh >/dev/null

node-packages: ## install the Debian packages of the real node (containerd, runc, CNI plugins, ...)
	@bash $(CLUSTER_MK_DIR)/host-packages.sh node

cluster-down: ## stop the cluster started by cluster-up; nothing is left running
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py down

cluster-kubeconfig: ## print the kubeconfig path of the running cluster
	@$(CLUSTER_PY) $(CLUSTER_MK_DIR)/harness.py kubeconfig
