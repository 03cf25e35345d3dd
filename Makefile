# partcheck developer entry points. `make` alone prints this help.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
NPM_STAMP := frontend/node_modules/.installed
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=


.PHONY: help install run test test-python test-frontend lint lint-deploy bench eb-bundle train audit-data copy-groups clean chromium frontend-build

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# The images' pins apply here too, so the tests run against the versions the images install.
$(STAMP): pyproject.toml deploy/constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint deploy/constraints.txt -e '.[all]'
	touch $(STAMP)

$(NPM_STAMP): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

frontend/dist/index.html: $(NPM_STAMP) $(shell find frontend/src frontend/index.html -type f 2>/dev/null)
	cd frontend && npm run build

frontend-build: frontend/dist/index.html ## Build the inspector page

chromium: ## Install Debian's chromium for the browser tests (never a downloaded browser)
	@test -x $(CHROMIUM) || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@$(CHROMIUM) --version

install: $(STAMP) frontend-build ## Create .venv, install every extra and build the page

run: install ## Start the local stack (moto, predict, router, review, agent on ./inbox)
	$(BIN)/partcheck up --inbox ./inbox

lint: $(STAMP) lint-deploy ## ruff, mypy, and the deployment linters
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# The measurement scripts behind docs/model.md import one another as scripts do, from their folder.
	PYTHONPATH=. MYPYPATH=docs/experiments $(BIN)/mypy docs/experiments

lint-deploy: ## hadolint, cfn-lint, checkov, compose-spec (in their own venv: checkov pins conflict with moto)
	bash deploy/lint.sh

test-python: $(STAMP) frontend-build chromium ## pytest: unit, integration and e2e
	$(BIN)/pytest $(PYTEST_ARGS)

test-frontend: $(NPM_STAMP) ## Vitest component tests
	cd frontend && npm test

test: install chromium lint test-frontend test-python ## Install everything the tests need, then run all of them

bench: install ## Benchmarks: prints tables, writes JSON under bench/results/
	$(PY) -m bench

eb-bundle: install ## Zip the review app for Elastic Beanstalk
	$(PY) deploy/eb/bundle.py

train: $(STAMP) ## Train the model from scratch on ../shared/data/casting/train
	$(BIN)/partcheck train --data ../shared/data/casting/train --out models/

audit-data: $(STAMP) ## Find photos filed under both labels, and copies across the split (~5 min)
	$(BIN)/partcheck audit-data --data ../shared/data/casting/train

copy-groups: $(STAMP) ## Group near-duplicates for train --groups (~25 min on 2 cores)
	$(BIN)/partcheck audit-data --data ../shared/data/casting/train --workers 2 \
		--groups services/predict/train/copy_groups.json

clean: ## Remove build output (keeps .partcheck state)
	rm -rf frontend/dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
