"""Roofline: FLOP counts on a tiny hand-computed config, peaks, MFU rows from bench.json + probe.json."""

from __future__ import annotations

import pytest

from bench.roofline import (
    FP16_ASSUMED,
    ModelShape,
    datasheet_peak,
    forward_flops,
    measured_peaks,
    peak_key,
    read_model_config,
    roofline_row,
    roofline_rows,
    useful_flops,
)

TINY = {"num_hidden_layers": 2, "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 2,
        "vocab_size": 10}


def test_forward_flops_by_hand():
    shape = ModelShape.from_config(TINY)
    # per layer: 2·3·(4·16 + 2·4·8) = 6·128 = 768; attention 2·2·9·4 = 144; ×2 layers = 1824
    assert forward_flops(3, shape) == 1824
    # T=1: 2·(64+64) + 4·1·4 = 256 + 16 = 272 per layer -> 544
    assert forward_flops(1, shape) == 544
    assert useful_flops([3, 1], shape) == 1824 + 544
    assert forward_flops(0, shape) == 0


def test_shape_needs_every_number():
    assert ModelShape.from_config({**TINY, "hidden_size": None}) is None
    assert ModelShape.from_config({"error": "no hub"}) is None
    assert ModelShape.from_config(None) is None


def test_peak_keys_and_datasheet():
    assert peak_key("float16") == ("fp16", "")
    assert peak_key("bfloat16") == ("bf16", "")
    assert peak_key("float32") == ("fp32", "")
    assert peak_key(None) == ("fp16", FP16_ASSUMED)
    assert datasheet_peak("NVIDIA H100 80GB HBM3").tflops == 989.0
    assert datasheet_peak("NVIDIA H100 PCIe").tflops == 756.0
    gb10 = datasheet_peak("NVIDIA GB10")
    assert gb10.tflops is None and "not published" in gb10.source
    assert datasheet_peak("Some CPU") is None and datasheet_peak(None) is None


def test_row_fractions():
    shape = ModelShape.from_config(TINY)
    row = roofline_row(backend="b", text_set="s", setting="batch 1", token_counts=[3, 1], wall_s=2e-9,
                       shape=shape, dtype="float16", peaks={"fp16": 2.0}, datasheet=datasheet_peak("H100 PCIe"))
    assert row.achieved_tflops == pytest.approx((1824 + 544) / 2e-9 / 1e12)
    assert row.mfu_measured == pytest.approx(row.achieved_tflops / 2.0)
    assert row.mfu_datasheet == pytest.approx(row.achieved_tflops / 756.0)
    assert row.tokens == 4 and row.texts == 2
    no_peak = roofline_row(backend="b", text_set="s", setting="x", token_counts=[3], wall_s=1.0, shape=shape,
                           dtype=None, peaks={}, datasheet=None)
    assert no_peak.mfu_measured is None and no_peak.mfu_datasheet is None and no_peak.note == FP16_ASSUMED


def _bench(model_config, max_tokens=None):
    samples = [{"value": 500.0, "ok": True, "error": None}, {"value": 500.0, "ok": True, "error": None}]
    return {
        "environment": {"model_config": model_config},
        "config": {"backends": ["native-fp16"]},
        "workload": {"sets": [{"name": "short", "token_counts": [3, 1, 3]}]},
        "backends": {"native-fp16": {"description": {"kind": "native", "dtype": "float16",
                                                      "max_tokens": max_tokens}}},
        "measurements": [{"backend": "native-fp16", "text_set": "short", "scenario": "throughput",
                          "params": {"batch_size": 2}, "samples": samples, "wall_s": 1.0}],
    }


def test_rows_from_bench_and_probe_json():
    probe = {"facts": {"device_name": "NVIDIA H100 PCIe"},
             "checks": [{"name": "kernels", "figures": {"matmul_tflops": {"fp16": 100.0, "fp32": 50.0}}}]}
    assert measured_peaks(probe) == {"fp16": 100.0, "fp32": 50.0}
    (row,) = roofline_rows(_bench(TINY), probe)
    assert row.setting == "batch 2" and row.wall_s == 1.0
    assert row.useful_tflop == pytest.approx((1824 * 2 + 544) / 1e12)
    assert row.measured_peak_tflops == 100.0 and row.datasheet_peak_tflops == 756.0
    capped = roofline_rows(_bench(TINY, max_tokens=1), probe)[0]
    assert capped.tokens == 3 and capped.useful_tflop == pytest.approx(3 * 544 / 1e12)


def test_no_rows_without_a_model_config():
    assert roofline_rows(_bench({"error": "offline"}), None) == []


def test_read_model_config_of_the_small_model(small_model_path):
    config = read_model_config(small_model_path)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (6, 384, 1536)
    assert (config["num_attention_heads"], config["vocab_size"]) == (12, 30522)


def test_read_model_config_never_raises(tmp_path):
    assert "error" in read_model_config(str(tmp_path / "missing"))
