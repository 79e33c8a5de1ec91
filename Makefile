# One entry point for operators and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON ?= python3
INVENTORY ?= inventory/local
# make logs: which services, from when.
SERVICE ?=
SINCE ?= 10m
SCENARIOS ?= docker_engine swarm default
# Parallel pytest processes for `make unit` (pytest-xdist); CI machines have 2 cores.
UNIT_WORKERS ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR ?= 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Debian packages the tests and benchmarks use (the project installs them; nothing by hand).
TEST_PACKAGES := nginx-light chromium libnss3-tools wrk nghttp2-client debootstrap pebble cron

.PHONY: help venv deploy status engine tools test lint docs unit molecule bench teardown clean rotate-secret-key rotate-db-password rotate-tls-key renew rollback logs backup restore

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create .venv with the pinned controller tools and the app

$(VENV)/.installed: requirements.txt $(wildcard app/requirements*.txt app/pyproject.toml tests/kit/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade 'pip>=24'
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --require-hashes -r app/requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e app -e tests/kit
	touch $@

deploy: venv ## Run site.yml against INVENTORY (default: this machine)
	ansible-playbook -i $(INVENTORY) site.yml

teardown: venv ## Remove the stack (keeps data; add ARGS='-e stack_teardown_remove_data=true')
	ansible-playbook -i $(INVENTORY) playbooks/teardown.yml $(ARGS)

rotate-secret-key: venv ## Rotate the app's secret key on INVENTORY in two rolling updates; nobody is logged out
	ansible-playbook -i $(INVENTORY) playbooks/rotate-secret-key.yml

rotate-db-password: venv ## Rotate the app's database password on INVENTORY in two rolling updates; no request fails
	ansible-playbook -i $(INVENTORY) playbooks/rotate-db-password.yml

rotate-tls-key: venv ## Make a new TLS server key and certificate on INVENTORY; nginx reloads it in place, no request fails
	ansible-playbook -i $(INVENTORY) playbooks/rotate-tls-key.yml

renew: venv ## tls_mode=acme: renew the certificate of INVENTORY when it is due (daily cron); else nothing
	ansible-playbook -i $(INVENTORY) playbooks/renew.yml

backup: venv ## Dump the database now, read back and checksummed, to the controller (<state dir>/backups)
	ansible-playbook -i $(INVENTORY) playbooks/backup.yml $(ARGS)

restore: venv ## Replace the database with BACKUP=file.dump or SCHEDULED=name.dump (a safety dump first); without CONFIRM=yes it only checks
	@test -n "$(BACKUP)$(SCHEDULED)" || { echo "usage: make restore BACKUP=path/to/file.dump|SCHEDULED=name.dump [CONFIRM=yes]" >&2; exit 2; }
	ansible-playbook -i $(INVENTORY) playbooks/restore.yml \
	  $(if $(BACKUP),-e stack_restore_file=$(abspath $(BACKUP))) $(if $(SCHEDULED),-e stack_restore_scheduled=$(SCHEDULED)) \
	  $(if $(filter yes,$(CONFIRM)),-e stack_restore_confirm=true) $(ARGS)

logs: venv ## Logs of the task containers on every node: SERVICE=nginx|app|db|backup (default all), SINCE=10m, FOLLOW=1
	bin/loginapp-logs -i $(INVENTORY) $(SERVICE) --since $(SINCE) $(if $(FOLLOW),--follow)

rollback: venv ## Roll the app back to the version deployed before the running one (zero-downtime, smoke-tested)
	ansible-playbook -i $(INVENTORY) playbooks/rollback.yml $(ARGS)

status: venv ## Nodes, services (replicas, image, last update), URLs, certificate expiry and last backup of INVENTORY
	ansible-playbook -i $(INVENTORY) playbooks/status.yml

engine: venv ## Install and start Docker on this machine (the hosts stage)
	ansible-playbook -i inventory/local playbooks/hosts.yml

tools: ## Install the Debian packages the tests need
	missing=""; for p in $(TEST_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  policy=/usr/sbin/policy-rc.d; made_policy=0; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; made_policy=1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  if [ $$made_policy = 1 ]; then rm -f $$policy; fi; \
	fi

test: lint unit molecule ## Everything CI runs: lint, unit tests, Molecule scenarios

lint: venv ## yamllint, ansible-lint (production profile), ruff, role READMEs current
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	@# Each role's README is generated from its argument specs: a stale one fails here.
	for role in roles/*/; do \
	  copy=$$(mktemp -d); cp -r $$role $$copy/; name=$$(basename $$role); \
	  aar-doc $$copy/$$name markdown >/dev/null; \
	  diff -u $$role/README.md $$copy/$$name/README.md || { echo "$$role/README.md is stale: run make docs"; exit 1; }; \
	  rm -rf $$copy; \
	done

docs: venv ## Regenerate the roles' READMEs from their meta/argument_specs.yml (aar-doc)
	for role in roles/*/; do aar-doc $$role markdown; done

unit: venv tools ## App tests (SQLite + PostgreSQL) and role/template tests
	pytest -q -n $(UNIT_WORKERS) app
	pytest -q -n $(UNIT_WORKERS) tests

molecule: venv engine tools ## Build the test hosts, then `molecule test` every scenario
	ansible-playbook molecule/resources/testhosts.yml
	for s in $(SCENARIOS); do \
	  start=$$(date +%s); molecule test -s $$s; \
	  echo "scenario $$s: $$(( $$(date +%s) - start )) s"; done

bench: venv engine tools ## Print benchmark tables: app servers, the deployed stack, day-2 deploy times, node loss
	python bench/app_bench.py
	python bench/stack_bench.py
	python bench/deploy_bench.py
	python bench/cluster_bench.py

clean: ## Remove the venv and caches (not the deployed stack)
	rm -rf $(VENV) .cache build
