# Every workflow is a make target. Each installs what it needs into .venv (and the
# cache outside git) and is a no-op when that is already done.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Build outputs (zoo graphs, npm sources, cluster binaries) live outside git, keyed by version.
export MODELZOO_CACHE ?= $(HOME)/.cache/modelzoo

MODEL ?= mtcnn
PORT ?= 8080
HOST ?= 127.0.0.1
PYTEST_ARGS ?=

VENV_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: help venv models run test test-unit test-cluster test-integration test-browser test-e2e \
	test-real bench soak dashboard-picture \
	lint format chromium promtool clean clean-cache

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

venv: $(VENV_STAMP) ## create .venv and install the project with every extra
$(VENV_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (3.11)"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --progress-bar off -e '.[operator,models,test]'
	@rm -f $(VENV)/.installed-* && touch $@

models: venv ## build every zoo graph into the cache (cached entries are reused)
	$(PY) -m modelzoo_models build

run: models ## serve MODEL (default mtcnn) on http://127.0.0.1:PORT (default 8080)
	$(VENV)/bin/modelzoo-server --zoo $(MODEL) --model-dir "$$($(PY) -m modelzoo_models dir)" \
		--host $(HOST) --port $(PORT)

chromium: ## Debian's headless Chromium for the browser tests
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

promtool: ## Debian's prometheus package, for promtool (the chart's alerting rules and their tests)
	@bash tests/cluster/host-packages.sh promtool

test: venv models chromium promtool cluster-bins image node-packages ## run every tier (unit, cluster, integration, models, browser, e2e, real, bench smoke)
	$(call pytest,)

test-unit: venv ## only the unit tests
	$(call pytest,-m unit)

test-cluster: venv cluster-bins promtool ## helm, promtool and the Kubernetes OpenAPI document, no running cluster
	$(call pytest,-m cluster)

test-real: venv models promtool cluster-bins image node-packages ## pods that really run: the chart and models on the real node, scraped and autoscaled
	$(call pytest,-m real tests/real)

test-integration: venv models ## the real server on loopback
	$(call pytest,-m integration)

test-browser: venv models chromium ## the upload page in headless Chromium
	$(call pytest,-m browser)

test-e2e: venv models cluster-bins ## the operator and chart on a real control plane
	$(call pytest,-m e2e)

bench: venv models cluster-bins image node-packages ## benchmarks side by side → docs/benchmarks.md (QUICK=1: a few minutes; the full run includes the real node)
	$(PY) -m tests.bench $(if $(QUICK),--quick)

dashboard-picture: venv models cluster-bins promtool ## plot the Grafana dashboard's panels from a real run's Prometheus → docs/dashboard.png (a few minutes)
	$(PY) -m tests.dashboard_picture --out docs/dashboard.png

# The reliability tests with larger budgets (fuzz examples, overload seconds); see README.
soak: venv models ## the reliability tier with larger budgets (about 30 minutes)
	MODELZOO_FUZZ_EXAMPLES=500 MODELZOO_OVERLOAD_SECONDS=300 \
		$(PY) -m pytest -m integration -s \
		tests/integration/test_openapi.py tests/integration/test_overload_load.py \
		tests/integration/test_hostile_inputs.py tests/integration/test_graph_refusal.py

lint: venv cluster-bins ## ruff (lint and format check), hadolint, helm lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile
	"$(CLUSTER_BIN)/helm" lint --strict charts/modelzoo

format: venv ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove the venv and test artifacts (keeps the build cache)
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-cache: ## remove the build cache outside git (zoo graphs, npm sources, cluster binaries)
	rm -rf "$(MODELZOO_CACHE)"

# pytest exits 5 when it collected no test: for `make test` that is a broken suite, not a pass.
define pytest
	@set +e; $(PY) -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc
endef

include tests/cluster/cluster.mk
