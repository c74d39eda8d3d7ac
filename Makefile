# mlops.notebooks — everything a user or CI runs. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
COLLECTIONS := $(ROOT)/build/collections
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1
export PATH := $(BIN):$(PATH)

.PHONY: demo test bootstrap install sanity lint unit integration benchmark cluster-up cluster-down clean

bootstrap:
	scripts/bootstrap.sh python

# Build the collection artifact and install it (kubernetes.core comes with the `ansible` package).
install: bootstrap
	@rm -rf build/dist && mkdir -p build/dist $(COLLECTIONS)
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist . >/dev/null
	$(BIN)/ansible-galaxy collection install --force --no-deps -p $(COLLECTIONS) build/dist/mlops-notebooks-$(VERSION).tar.gz >/dev/null
	@echo "installed mlops.notebooks $(VERSION) into $(COLLECTIONS)"

demo: install
	$(BIN)/ansible-playbook playbooks/validate_notebooks.yml

test: install sanity lint unit integration

# ansible-test needs the tree at ansible_collections/<ns>/<name>: scripts/sanity.sh copies it there.
sanity: bootstrap
	scripts/bootstrap.sh lint
	scripts/sanity.sh

lint: bootstrap
	$(BIN)/ansible-lint --profile production --offline

unit: bootstrap
	$(BIN)/pytest -rs tests/unit

integration: install
	scripts/bootstrap.sh browser images
	$(BIN)/pytest -rs tests/integration

benchmark: install
	$(BIN)/python benchmarks/validate_bench.py

# stdout carries only KUBECONFIG=... and REGISTRY=..., so `eval "$$(make -s cluster-up)"` works; the rest goes to stderr
cluster-up:
	@scripts/bootstrap.sh python images >&2
	@$(BIN)/python tests/cluster/controlplane.py up

cluster-down:
	@$(BIN)/python tests/cluster/controlplane.py down

clean:
	rm -rf build reports
