"""Make an XLM-R model folder that ships only tokenizer.json readable by llama.cpp's converter.

    python tools/converter_tokenizer.py MODEL_DIR STAGE_DIR    prints the folder to convert

bge-m3 ships sentencepiece.bpe.model, which the converter prefers. A folder without it (the
bge-m3 stand-in this project builds, a model re-saved by transformers 5) goes through
tokenizer.json, and there the converter reads only a bare `Precompiled` normaliser: the
normaliser transformers writes for XLM-R, Sequence[Precompiled, Replace(" {2,}" -> " ")], ends
in "KeyError: 'precompiled_charsmap'". The Replace is what SentencePiece calls
remove_extra_whitespaces, which the converter takes from clean_up_tokenization_spaces. So the
staged copy has the Precompiled part as its normaliser and clean_up_tokenization_spaces true;
every other file is a link to the original. Any other normaliser part is refused: llama.cpp
could not reproduce it, and the GGUF's tokens would silently differ.

Prints MODEL_DIR itself when nothing needs changing. Exit status 2 with one line on refusal.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# transformers' SpmConverter adds this after the charsmap: repeated spaces become one.
EXTRA_WHITESPACE = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}


def needs_staging(model: Path) -> dict | None:
    """tokenizer.json's content when the converter would fail on its normaliser, else None."""
    if (model / "sentencepiece.bpe.model").is_file() or not (model / "tokenizer.json").is_file():
        return None
    config = json.loads((model / "config.json").read_text())
    if config.get("model_type") != "xlm-roberta":
        return None
    tokenizer = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    normalizer = tokenizer.get("normalizer") or {}
    return tokenizer if normalizer.get("type") == "Sequence" else None


def flatten(tokenizer: dict) -> dict:
    """The normaliser as the converter reads it; ValueError for a part it cannot express."""
    parts = tokenizer["normalizer"]["normalizers"]
    charsmaps = [p for p in parts if p.get("type") == "Precompiled"]
    others = [p for p in parts if p.get("type") != "Precompiled" and p != EXTRA_WHITESPACE]
    if len(charsmaps) != 1 or others:
        names = ", ".join(p.get("type", "?") for p in parts)
        raise ValueError(f"tokenizer.json normalises with {names}; llama.cpp's converter can express only "
                         "Precompiled plus collapsing repeated spaces")
    return {**tokenizer, "normalizer": charsmaps[0]}


def stage(model: Path, stage_dir: Path) -> Path:
    tokenizer = needs_staging(model)
    if tokenizer is None:
        return model
    flat = flatten(tokenizer)
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    for entry in model.iterdir():
        if entry.name not in ("tokenizer.json", "tokenizer_config.json"):
            (stage_dir / entry.name).symlink_to(entry.resolve())
    (stage_dir / "tokenizer.json").write_text(json.dumps(flat, ensure_ascii=False), encoding="utf-8")
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config["clean_up_tokenization_spaces"] = EXTRA_WHITESPACE in tokenizer["normalizer"]["normalizers"]
    (stage_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return stage_dir


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/converter_tokenizer.py MODEL_DIR STAGE_DIR", file=sys.stderr)
        return 2
    try:
        print(stage(Path(argv[0]), Path(argv[1])))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
