# One entry point for people and CI. Inside the container PYTHON is the image's python.
VENV    ?= .venv
PYTHON  ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
RESULTS ?= results
PROFILE ?= td073
TORCH_CPU_PIN ?= torch==2.13.0

.PHONY: help setup test test-gpu probe bench verdict attach perf lint-docker clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

setup: ## create .venv with CPU torch and the project (no GPU needed)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_CPU_PIN)
	$(VENV)/bin/pip install --quiet -e '.[test]'

test: ## the whole CPU test suite (what CI runs)
	$(PYTHON) -m pytest -m "not gpu" -q

test-gpu: ## tests that need a CUDA device
	$(PYTHON) -m pytest -m gpu -q

probe: ## run the probe here; writes $(RESULTS)/probe.json and probe.md
	$(PYTHON) -m probe --results $(RESULTS)

lint-docker: ## validate compose.yaml and lint docker/Dockerfile (no engine needed)
	$(PYTHON) -m pytest -q tests/test_docker_files.py

clean: ## remove results
	rm -rf $(RESULTS)
