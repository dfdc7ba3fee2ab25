"""tools/converter_tokenizer.py: what llama.cpp's converter is given for an XLM-R folder that
ships only tokenizer.json (the converter itself is exercised in test_standin_two_engines)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "converter_tokenizer.py"
spec = importlib.util.spec_from_file_location("converter_tokenizer", SCRIPT)
converter_tokenizer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(converter_tokenizer)

CHARSMAP = {"type": "Precompiled", "precompiled_charsmap": "AAAA"}


def xlmr_folder(path: Path, normalizer: dict, clean_up: bool = False) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    (path / "tokenizer.json").write_text(json.dumps({"normalizer": normalizer, "model": {"type": "Unigram"}}))
    (path / "tokenizer_config.json").write_text(json.dumps({"clean_up_tokenization_spaces": clean_up}))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def test_transformers_normaliser_is_staged_as_charsmap_plus_whitespace_cleanup(tmp_path):
    sequence = {"type": "Sequence", "normalizers": [CHARSMAP, converter_tokenizer.EXTRA_WHITESPACE]}
    model = xlmr_folder(tmp_path / "bge-m3-standin", sequence)
    staged = converter_tokenizer.stage(model, tmp_path / "stage" / "bge-m3-standin")
    assert staged.name == "bge-m3-standin" and staged != model
    assert json.loads((staged / "tokenizer.json").read_text())["normalizer"] == CHARSMAP
    assert json.loads((staged / "tokenizer_config.json").read_text())["clean_up_tokenization_spaces"] is True
    assert (staged / "model.safetensors").is_symlink() and (staged / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((model / "tokenizer.json").read_text())["normalizer"] == sequence  # original untouched


@pytest.mark.parametrize("case", ["sentencepiece model present", "plain charsmap", "not xlm-roberta"])
def test_folders_the_converter_reads_as_they_are_are_not_staged(tmp_path, case):
    sequence = {"type": "Sequence", "normalizers": [CHARSMAP, converter_tokenizer.EXTRA_WHITESPACE]}
    model = xlmr_folder(tmp_path / "m", CHARSMAP if case == "plain charsmap" else sequence)
    if case == "sentencepiece model present":
        (model / "sentencepiece.bpe.model").write_bytes(b"spm")
    if case == "not xlm-roberta":
        (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert converter_tokenizer.stage(model, tmp_path / "stage") == model
    assert not (tmp_path / "stage").exists()


def test_a_normaliser_llama_cpp_cannot_express_is_refused_in_one_line(tmp_path):
    lowercase = {"type": "Sequence", "normalizers": [CHARSMAP, {"type": "Lowercase"}]}
    model = xlmr_folder(tmp_path / "m", lowercase)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(model), str(tmp_path / "stage")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: tokenizer.json normalises with Precompiled, Lowercase")
    assert len(proc.stderr.strip().splitlines()) == 1
