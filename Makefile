# The two commands of the README:
#   make demo   install from the locks and run the pipeline on the bundled samples
#   make test   install from the locks, check the code (lint, format, types), run the test suite
SHELL := /bin/bash
PIPENV_VERSION := 2026.10.3
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_NOSPIN := 1
export PIPENV_YES := 1
export PYTHONDONTWRITEBYTECODE := 1
PIPENV := python3 -m pipenv
DEMO_OUTPUT ?= demo-output
PYTHON_SOURCES := src tests bench samples

.PHONY: demo test install deploy-tools deploy-check lint clean registry

install:
	@python3 -m pipenv --version >/dev/null 2>&1 || python3 -m pip install --quiet "pipenv==$(PIPENV_VERSION)"
	$(PIPENV) sync --dev

deploy-tools: install
	cd deploy && PIPENV_PIPFILE=$$PWD/Pipfile $(PIPENV) sync
	cd deploy/checks && PIPENV_PIPFILE=$$PWD/Pipfile $(PIPENV) sync

# The deployment checked statically, offline: every stack of both groups
# rendered, cfn-lint, checkov (.checkov.yaml) and zizmor (docs/deployment.md).
deploy-check: deploy-tools
	$(PIPENV) run python tests/deployment/static_checks.py

demo: install
	rm -rf $(DEMO_OUTPUT)
	$(PIPENV) run bridge-downstream registry build \
		--archive-map samples/registry-src/archive-map.json \
		--schemas samples/registry-src/schemas \
		--schema-mapping samples/registry-src/schema-mapping.json \
		--dataset-mapping samples/registry-src/dataset-mapping.json \
		--pipeline-rules samples/registry-src/pipeline-rules.json \
		--out $(DEMO_OUTPUT)/registry
	# the samples hold three bad archives on purpose (invalid, corrupt, no metadata)
	$(PIPENV) run bridge-downstream run samples/archives --registry $(DEMO_OUTPUT)/registry --output $(DEMO_OUTPUT)/mtb --max-invalid 3
	$(PIPENV) run bridge-downstream run samples/exports --profile recover --registry $(DEMO_OUTPUT)/registry --output $(DEMO_OUTPUT)/recover

# The real MTB registry (the deployed one) from registry-sources/mtb.yaml:
#   make registry REGISTRY_ROOT=../shared/data   (a folder holding the file's roots)
# No default root: the samples are `make demo`'s, never this registry's.
REGISTRY_SOURCES ?= registry-sources/mtb.yaml
registry: install
	@test -n "$(REGISTRY_ROOT)" || { echo "make registry: set REGISTRY_ROOT to the folder holding the roots of $(REGISTRY_SOURCES)" >&2; exit 2; }
	$(PIPENV) run bridge-downstream registry build --sources $(REGISTRY_SOURCES) --root $(REGISTRY_ROOT) --out build/registry

test: deploy-tools lint deploy-check
	@# The run-report page is checked in a real headless Chromium (OS package: browsers that download their own builds cannot be fetched here).
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(PIPENV) run pytest

# Lint, format and type check: settings in pyproject.toml; `make test` runs it first.
lint: install
	$(PIPENV) run ruff check $(PYTHON_SOURCES)
	$(PIPENV) run ruff format --check $(PYTHON_SOURCES)
	$(PIPENV) run mypy

clean:
	rm -rf .venv deploy/.venv deploy/checks/.venv $(DEMO_OUTPUT)
