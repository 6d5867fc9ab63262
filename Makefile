# aiplatform.observability: one entry point for set-up, the lab and every test.
#   make lab           build the podman lab (1 monitoring host, 2 GPU nodes) and deploy site.yml to it
#   make lab-destroy   remove the lab containers and network
#   make test          lint, sanity, unit, integration, collection build, molecule (default + trixie),
#                      in three concurrent groups; timings in .cache/logs/stages.json (docs/testing.md)
# Both set up their own environment: system packages via apt (as root), Python tools in .venv/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
PYTHON ?= python3
STAMPS := $(ROOT)/.cache/stamps

export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(ROOT)/lab/containers.conf
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.collections
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Debian packages the tools and tests need on the controller.
# golang-github-containernetworking-plugin-dnsname: name resolution on podman's CNI networks, for the
# molecule scenario that scrapes by name (the lab and the other scenario work without it).
SYSTEM_PACKAGES := podman runc debootstrap uidmap prometheus prometheus-alertmanager \
                   postgresql postgresql-client python3-venv git make \
                   golang-github-containernetworking-plugin-dnsname
SYSTEM_COMMANDS := podman runc debootstrap promtool amtool psql git
SYSTEM_FILES := /usr/lib/cni/dnsname

MOLECULE_SCENARIOS := default trixie
LAB_IMAGE_SUITES := bookworm trixie

.PHONY: help setup system-deps venv link images lint yamllint ansible-lint sanity unit integration test-grafana \
        collection molecule test lab lab-destroy clean

help:
	@sed -n '2,7p' Makefile | sed 's/^# \{0,1\}//'

## ---------------------------------------------------------------- set-up
setup: system-deps venv link

system-deps: $(STAMPS)/system-deps
$(STAMPS)/system-deps:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing initdb"; \
	for f in $(SYSTEM_FILES); do test -e $$f || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root, or install: $(SYSTEM_PACKAGES)" >&2; exit 1; fi; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	fi
	@mkdir -p $(STAMPS) && touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements-dev.txt files/exporters/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e 'files/exporters[gpu]'
	@mkdir -p $(STAMPS) && touch $@

# Make this checkout resolvable as the collection aiplatform.observability.
link:
	@mkdir -p .collections/ansible_collections/aiplatform
	@ln -sfn ../../.. .collections/ansible_collections/aiplatform/observability

images: system-deps
	@for suite in $(LAB_IMAGE_SUITES); do lab/build-image.sh $$suite; done

## ---------------------------------------------------------------- tests
lint: setup
	yamllint -s .
	ansible-lint --profile production

sanity: setup
	bash tests/run_sanity.sh

unit: setup
	pytest -q -p no:cacheprovider tests/unit
	cd files/exporters && pytest -q -p no:cacheprovider

integration: setup
	pytest -q -p no:cacheprovider tests/integration

# The Grafana contract suite (tests/integration/grafana) against a real Grafana instead of the
# stand-in: GRAFANA_URL=http://host:3000 GRAFANA_TOKEN=glsa_... make test-grafana (an Admin service
# account's token, from the environment: make exports it to pytest, and it never reaches a command
# line; GRAFANA_USER/GRAFANA_PASSWORD optional). docs/grafana-modules.md says how to start one.
test-grafana: setup
	@if [ -z "$${GRAFANA_URL:-}" ] || [ -z "$${GRAFANA_TOKEN:-}" ]; then \
	  echo "make test-grafana needs GRAFANA_URL and GRAFANA_TOKEN in the environment (an Admin service account's token), e.g." >&2; \
	  echo "  GRAFANA_URL=http://localhost:3000 GRAFANA_TOKEN=glsa_... make test-grafana" >&2; exit 2; fi
	pytest -q -p no:cacheprovider -x tests/integration/grafana

# Each scenario's output and its verifier's JUnit XML are kept in .cache/logs/; when a scenario
# fails, what failed is printed last. A scenario whose check stage (--check on fresh hosts) ignored
# an error fails too. `make molecule` runs the scenarios at the same time; `make molecule-<name>` one.
molecule: setup images
	@$(BIN)/python tests/run_stages.py $(foreach s,$(MOLECULE_SCENARIOS),--group molecule-$(s))

molecule-%: setup images
	@mkdir -p .cache/logs; log=.cache/logs/molecule-$*.log; junit=.cache/logs/verify-$*.xml; rm -f $$junit; \
	rc=0; molecule test -s $* 2>&1 | tee $$log || rc=$$?; \
	if [ $$rc -ne 0 ]; then $(BIN)/python tests/failure_summary.py $$log $$junit; exit $$rc; fi; \
	$(BIN)/python tests/failure_summary.py --check-stage $$log

# Three groups at the same time (2 cores: the molecule scenarios spend much of their time waiting on
# containers and polls): the checks that need no containers, and each molecule scenario.
test: setup images
	@$(BIN)/python tests/run_stages.py --group "lint sanity unit integration" \
	  $(foreach s,$(MOLECULE_SCENARIOS),--group molecule-$(s))
	@echo "make test: all stages passed"

## ---------------------------------------------------------------- lab
lab: setup images
	lab/up.sh
	ansible-playbook -i inventories/lab/hosts.yml playbooks/lab.yml

lab-destroy:
	lab/down.sh

clean: lab-destroy
	rm -rf .cache/stamps .cache/dist
