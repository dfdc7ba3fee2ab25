#!/usr/bin/env bash
# The smoke bench with native sentence-transformers against a real llama.cpp llama-server on
# this machine: builds (or reuses) llama-server, converts the smoke model with llama.cpp's
# converter, serves it on a free loopback port, runs `bench run` with native-fp32 and the
# `openai` backend, renders the verdict, and stops the server whatever happens.
#   tools/bench-llama-server.sh RESULTS_DIR [GGUF_TYPE]     GGUF_TYPE f16 (as Ollama ships) or f32
# LLAMA_SERVER_ARGS: llama-server flags (default: -c 512, the model's own context); BENCH_ARGS:
# more `bench run` options (e.g. --max-seq-length 512 to embed the same inputs natively).
# What it measures is llama.cpp on this CPU: not Ollama, and not a GPU.
set -euo pipefail

results=${1:?usage: tools/bench-llama-server.sh RESULTS_DIR [f16|f32]}
type=${2:-f16}
python=${PYTHON:-python3}
here=$(dirname "$0")

llama=$(PYTHON="$python" "$here/build-llama-server.sh" | tail -1)
model=$("$python" -c "from bench.config import PROFILES, resolve_model; print(resolve_model(PROFILES['smoke'].model))")
mkdir -p "$results"
gguf=$(PYTHON="$python" "$here/convert-to-gguf.sh" "$model" "$results/gguf" smoke-model "$type")
port=$("$python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")

# shellcheck disable=SC2086 # LLAMA_SERVER_ARGS and BENCH_ARGS are lists of flags
"$llama/bin/llama-server" -m "$gguf" --embedding --host 127.0.0.1 --port "$port" --no-webui \
  ${LLAMA_SERVER_ARGS:--c 512} >"$results/llama-server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
ready() { "$python" -c "import httpx, sys; sys.exit(httpx.get('http://127.0.0.1:$port/health').status_code != 200)" 2>/dev/null; }
for _ in $(seq 120); do
  ready && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$results/llama-server.log" >&2; exit 1; }
  sleep 0.5
done
ready || { echo "llama-server did not become ready within 60 s" >&2; tail -20 "$results/llama-server.log" >&2; exit 1; }
echo "llama-server ($type GGUF) on 127.0.0.1:$port; log in $results/llama-server.log" >&2

"$python" -m bench run --profile smoke --backend native-fp32 --backend openai \
  --openai-url "http://127.0.0.1:$port" --results "$results" ${BENCH_ARGS:-}
"$python" -m bench verdict --results "$results"
