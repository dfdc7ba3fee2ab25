"""Roofline: FLOP and byte counts on hand-computed configs, the ceilings from probe.json, both
sides of the roofline per backend and set, the single-text floor, and the verdict's text."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench.analyse.roofline import (
    FP16_ASSUMED,
    Bound,
    Ceilings,
    ModelShape,
    SingleTextRow,
    bound_of,
    ceilings_for,
    forward_bytes,
    forward_flops,
    precision_of,
    probe_ceilings,
    read_model_config,
    roofline_row,
    roofline_rows,
    single_text_floors,
    single_text_row,
    single_text_rows,
    useful_flops,
    vendor_figures,
)

TINY = {"num_hidden_layers": 2, "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 2,
        "vocab_size": 10}
# BAAI/bge-m3's config.json: XLM-RoBERTa large, fp16 weights about 1.1 GB on disk.
BGE_M3 = {"model_type": "xlm-roberta", "num_hidden_layers": 24, "hidden_size": 1024, "intermediate_size": 4096,
          "num_attention_heads": 16, "vocab_size": 250002}
GB10_LIKE = Ceilings(device="cuda", matmul_tflops={"fp16": 92.0, "bf16": 92.0, "fp32": 23.0},
                     bandwidth_gbs=273.0, bandwidth_detail="synthetic", memory="synthetic unified memory")
FIXTURE = Path(__file__).parent / "fixtures" / "results" / "conditional"


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


def test_forward_bytes_by_hand():
    shape = ModelShape.from_config(TINY)
    assert shape.layer_parameters == 4 * 16 + 2 * 4 * 8 + 9 * 4 + 8  # 172
    half = precision_of({"kind": "native", "dtype": "float16"})
    # weights 2·(2 calls · 2 layers · 172 + 2·4·3 gathered rows) = 1424; activations 2·2·2·3·(4+8) = 288
    assert forward_bytes(3, 2, shape, half) == 1424 + 288
    unknown = precision_of({"kind": "ollama"})
    assert forward_bytes(3, 1, shape, unknown) is None


def test_layer_parameters_match_a_real_xlm_roberta_layer():
    """Independent count: the parameters transformers gives one XLM-RoBERTa encoder layer."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              vocab_size=100, max_position_embeddings=40)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    layer = sum(p.numel() for p in model.encoder.layer[0].parameters())
    shape = ModelShape.from_config({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 256,
                                    "num_attention_heads": 4, "vocab_size": 100})
    assert shape.layer_parameters == layer


def test_precision_from_backend_descriptions():
    assert precision_of({"kind": "native", "dtype": "float32"}) == precision_of({"dtype": "float32"})
    fp32 = precision_of({"kind": "native", "dtype": "float32"})
    assert (fp32.weight_bytes, fp32.activation_bytes, fp32.peak_key, fp32.note) == (4, 4, "fp32", "")
    bf16 = precision_of({"kind": "native", "dtype": "bfloat16"})
    assert (bf16.weight_bytes, bf16.peak_key) == (2, "bf16")
    f16 = precision_of({"kind": "ollama", "weight_dtype": "F16", "weight_dtype_source": "/api/ps details"})
    assert (f16.weight_bytes, f16.activation_bytes, f16.peak_key) == (2, 4, "fp16")
    assert "weights F16 (/api/ps details)" in f16.note and "assumed" not in f16.note
    q4 = precision_of({"kind": "ollama", "weight_dtype": "Q4_0"})
    assert q4.weight_bytes == pytest.approx(18 / 32) and "fp16 matmul peak assumed" in q4.note
    mixed = precision_of({"kind": "ollama", "weight_dtype": "Q4_K_M"})
    assert mixed.weight_bytes is None and "bytes per weight unknown" in mixed.note
    silent = precision_of({"kind": "ollama"})
    assert silent.weight_bytes is None and "unreported" in silent.note
    assert precision_of({}).note == FP16_ASSUMED


def test_vendor_figures_come_from_the_data_file():
    h100 = vendor_figures("NVIDIA H100 80GB HBM3")
    assert (h100.tflops, h100.bandwidth_gbs) == (989.0, 3350.0)
    assert vendor_figures("NVIDIA H100 PCIe").bandwidth_gbs == 2000.0
    assert vendor_figures("NVIDIA H200").bandwidth_gbs == 4800.0
    gb10 = vendor_figures("NVIDIA GB10")
    assert gb10.tflops is None and "not published" in gb10.compute_source
    assert gb10.bandwidth_gbs == 273.0 and "DGX Spark" in gb10.bandwidth_source
    assert gb10.reported.bf16_tflops == 92.3 and "huggingface/kernels PR 283" in gb10.reported.source
    assert vendor_figures("Some CPU") is None and vendor_figures(None) is None


def test_bound_names_the_larger_side():
    assert bound_of(2e12, 1e9, 1.0, 1.0).kind == "compute"  # 2 s compute vs 1 s memory
    memory = bound_of(1e12, 3e9, 1.0, 1.0)
    assert memory.kind == "memory" and memory.attainable_s == pytest.approx(3.0)
    only_compute = bound_of(1e12, None, 1.0, 1.0)
    assert only_compute.kind.startswith("compute (memory side not measured") and only_compute.attainable_s == 1.0
    assert bound_of(1e12, 1e9, None, None) == Bound(None, None)
    assert Bound(None, None).kind == "not known" and Bound(None, None).attainable_s is None


def test_ceilings_apply_to_the_device_the_probe_measured():
    assert ceilings_for({"device": "cuda:0"}, GB10_LIKE) == (GB10_LIKE, "")
    assert ceilings_for({"device": "gpu"}, GB10_LIKE) == (GB10_LIKE, "")  # Ollama's /api/ps placement
    applied, note = ceilings_for({"device": "cpu"}, GB10_LIKE)
    assert applied is None and "the probe measured cuda" in note
    applied, note = ceilings_for({"device": "partial"}, GB10_LIKE)
    assert applied is GB10_LIKE and "overstate" in note
    applied, note = ceilings_for({}, GB10_LIKE)
    assert applied is GB10_LIKE and "assumed" in note
    assert ceilings_for({"device": "cpu"}, None)[0] is None


def _probe(*, kernels=None, ceilings=None, device="cuda", name="NVIDIA GB10"):
    checks = []
    if kernels is not None:
        checks.append({"name": "kernels", "figures": {"device": device, "matmul_tflops": kernels}})
    if ceilings is not None:
        checks.append({"name": "ceilings", "figures": ceilings})
    return {"config": {"device": device}, "facts": {"device_name": name}, "checks": checks}


def _ceilings_figures(device, gbs, matmul=None):
    figures = {"device": device, "memory": f"{device} memory", "bandwidth_gbs": gbs, "bandwidth_basis": "read",
               "bandwidth": {"read": {"reps": 10, "gbs_median": gbs * 0.9, "gbs_worst": gbs * 0.8}}}
    if matmul:
        figures["matmul_tflops"] = matmul
    return figures


def test_probe_ceilings_on_a_gpu_a_cpu_and_an_old_probe():
    gpu = probe_ceilings(_probe(kernels={"fp16": 92.0}, ceilings=_ceilings_figures("cuda", 273.0)))
    assert (gpu.device, gpu.matmul_tflops, gpu.bandwidth_gbs) == ("cuda", {"fp16": 92.0}, 273.0)
    assert "read: best of n=10" in gpu.bandwidth_detail
    cpu = probe_ceilings(_probe(ceilings=_ceilings_figures("cpu", 17.0, {"fp32": 0.05, "bf16": 0.1}), device=None))
    assert (cpu.device, cpu.matmul_tflops, cpu.bandwidth_gbs) == ("cpu", {"fp32": 0.05, "bf16": 0.1}, 17.0)
    old = probe_ceilings(_probe(kernels={"fp16": 100.0}))
    assert old.device == "cuda" and old.bandwidth_gbs is None and "not measured" in old.bandwidth_detail
    assert probe_ceilings(None) is None


def test_gb10_like_probe_and_bge_m3_give_a_memory_bound_single_text_floor():
    """bge-m3 in fp16 is about 1.13 GB, but 512 MB of that is the 250,002 × 1,024 word table, of
    which a forward pass gathers only the call's rows. What a 50-token call must read is the 24
    layers' weights (24 · 12,596,224 parameters · 2 bytes = 604.6 MB), 50 gathered rows of the word
    and position tables, and the activations (2 bytes · 24 · 2 · 50 · 5,120 = 24.6 MB): 629.4 MB,
    2.31 ms at 273 GB/s. Counting the whole 1.13 GB file instead gives the 4.1 ms often quoted,
    which is not a floor. Compute: 30.4 GFLOP, 0.33 ms at 92 TFLOP/s, so the call is memory-bound."""
    shape = ModelShape.from_config(BGE_M3)
    fp16 = precision_of({"kind": "native", "dtype": "float16", "device": "cuda"})
    by_hand_bytes = 2 * (24 * 12_596_224 + 2 * 1024 * 50) + 2 * 24 * 2 * 50 * (1024 + 4096)
    assert forward_bytes(50, 1, shape, fp16) == by_hand_bytes == 629_399_552
    by_hand_flops = 24 * (2 * 50 * (4 * 1024**2 + 2 * 1024 * 4096) + 4 * 50**2 * 1024)
    row = single_text_row(backend="native-fp16", text_set="short", call_tokens=[48, 50, 52], p50_ms=3.0, n=3,
                          shape=shape, precision=fp16, ceilings=GB10_LIKE)
    assert row.bound.kind == "memory"
    assert row.bound.compute_s == pytest.approx(by_hand_flops / 92e12)
    assert row.floor_ms == pytest.approx(by_hand_bytes / 273e9 * 1e3) == pytest.approx(2.3055, abs=1e-4)
    assert row.multiple == pytest.approx(3.0 / row.floor_ms)
    assert row.reached == pytest.approx(row.floor_ms / 3.0)
    ollama = single_text_row(backend="ollama", text_set="short", call_tokens=[50], p50_ms=4.0, n=3, shape=shape,
                             precision=precision_of({"kind": "ollama", "weight_dtype": "F16", "device": "gpu"}),
                             ceilings=GB10_LIKE)
    assert ollama.floor_ms > row.floor_ms  # F32 activations in ggml move more bytes


def _single(backend, text_set, floor_ms, p50_ms, weight_bytes=2.0):
    bound = Bound(None, None) if floor_ms is None else Bound(floor_ms / 1e4, floor_ms / 1e3)
    return SingleTextRow(backend, text_set, 10, 50, bound, floor_ms, p50_ms, 10, weight_bytes, "")


def test_single_text_floors_take_the_lowest_floor_and_every_sides_multiple():
    floors = single_text_floors([_single("ollama", "short", 2.4, 4.0), _single("native-fp32", "short", 4.6, 9.2),
                                 _single("native-bf16", "short", 2.3, 3.0), _single("ollama", "long", 10.0, 50.0),
                                 _single("native-bf16", "long", None, 30.0)])
    short, long_ = floors
    assert (short.text_set, short.floor_ms, short.floor_backend, short.bound) == ("short", 2.3, "native-bf16", "memory")
    assert short.multiple_of("ollama") == pytest.approx(4.0 / 2.3)
    assert short.multiple_of("native-fp32") == pytest.approx(4.0)
    assert short.speedup_out_of_reach("ollama", 2.0) is True  # 1.74× the floor: 2× faster is impossible
    assert short.speedup_out_of_reach("native-fp32", 2.0) is False
    assert short.speedup_out_of_reach("absent", 2.0) is False
    assert [s.backend for s in long_.sides] == ["ollama"]  # a row without a floor is left out
    assert long_.speedup_out_of_reach("ollama", 2.0) is False  # 5× the floor: room to be 2× faster
    assert single_text_floors([]) == ()


def test_throughput_row_both_sides():
    shape = ModelShape.from_config(TINY)
    half = precision_of({"kind": "native", "dtype": "float16"})
    ceilings = Ceilings("cuda", {"fp16": 2.0}, 1e-6, "synthetic", "synthetic")  # 1 kB/s: memory-bound
    row = roofline_row(backend="b", text_set="s", setting="batch 2", token_counts=[3, 1], calls=1, wall_s=4.0,
                       shape=shape, precision=half, ceilings=ceilings, vendor=vendor_figures("H100 PCIe"))
    flops = 1824 + 544
    nbytes = forward_bytes(4, 1, shape, half)
    assert row.useful_tflop == pytest.approx(flops / 1e12) and row.gbytes == pytest.approx(nbytes / 1e9)
    assert row.bound.kind == "memory" and row.bound.memory_s == pytest.approx(nbytes / 1e3)
    assert row.bound_texts_per_s == pytest.approx(2 / row.bound.memory_s)
    assert row.reached == pytest.approx(row.bound.memory_s / 4.0)
    assert row.mfu_measured == pytest.approx(flops / 4.0 / 2e12)
    assert row.mfu_datasheet == pytest.approx(flops / 4.0 / 756e12)
    with pytest.raises(ValueError):
        roofline_row(backend="b", text_set="s", setting="x", token_counts=[3], calls=1, wall_s=0.0, shape=shape,
                     precision=half, ceilings=None, vendor=None)
    fp32 = roofline_row(backend="b", text_set="s", setting="batch 2", token_counts=[3, 1], calls=1, wall_s=4.0,
                        shape=shape, precision=precision_of({"kind": "native", "dtype": "float32"}),
                        ceilings=ceilings, vendor=vendor_figures("H100 PCIe"))
    assert fp32.mfu_datasheet is None  # the datasheet figure is dense bf16: no fp32 MFU against it


def test_a_fraction_above_one_says_the_ceiling_is_too_low():
    from bench.report.roofline_view import format_fraction

    assert format_fraction(0.5) == "50.0%"
    assert format_fraction(1.44) == "144% (ceiling too low)"
    assert format_fraction(None) == "not available"


def test_llama_servers_reported_precision_gives_the_memory_side():
    f16 = precision_of({"kind": "openai", "model_precision": "F16"})
    assert (f16.weight_bytes, f16.peak_key) == (2, "fp16")
    f32 = precision_of({"kind": "openai", "model_precision": "all F32"})
    assert f32.weight_bytes == 4
    assert precision_of({"kind": "openai", "model_precision": "float16 (TEI)"}).weight_bytes is None


def _bench(model_config, max_tokens=None):
    samples = [{"value": 500.0, "ok": True, "error": None}, {"value": 500.0, "ok": True, "error": None}]
    single = [{"value": v, "ok": True, "error": None} for v in (2.0, 3.0, 4.0)]
    return {
        "environment": {"model_config": model_config},
        "config": {"backends": ["native-fp16"]},
        "workload": {"sets": [{"name": "short", "token_counts": [3, 1, 3]}]},
        "backends": {"native-fp16": {"description": {"kind": "native", "dtype": "float16", "device": "cuda",
                                                      "max_tokens": max_tokens}}},
        "measurements": [{"backend": "native-fp16", "text_set": "short", "scenario": "throughput",
                          "params": {"batch_size": 2}, "samples": samples, "wall_s": 1.0},
                         {"backend": "native-fp16", "text_set": "short", "scenario": "single",
                          "params": {"calls": 3}, "samples": single, "wall_s": 0.01}],
    }


def test_rows_from_bench_and_probe_json():
    probe = _probe(kernels={"fp16": 100.0, "fp32": 50.0}, ceilings=_ceilings_figures("cuda", 2000.0),
                   name="NVIDIA H100 PCIe")
    (row,) = roofline_rows(_bench(TINY), probe)
    assert row.setting == "batch 2" and row.wall_s == 1.0 and row.calls == 2
    assert row.useful_tflop == pytest.approx((1824 * 2 + 544) / 1e12)
    assert row.measured_peak_tflops == 100.0 and row.datasheet_peak_tflops == 756.0
    assert row.bound.memory_s == pytest.approx(forward_bytes(7, 2, ModelShape.from_config(TINY),
                                                             precision_of({"dtype": "float16"})) / 2000e9)
    capped = roofline_rows(_bench(TINY, max_tokens=1), probe)[0]
    assert capped.tokens == 3 and capped.useful_tflop == pytest.approx(3 * 544 / 1e12)
    (single,) = single_text_rows(_bench(TINY), probe)
    assert (single.calls, single.median_tokens, single.p50_ms, single.n) == (3, 3, 3.0, 3)
    assert single.floor_ms == pytest.approx(bound_of(1824, forward_bytes(3, 1, ModelShape.from_config(TINY),
                                                                           precision_of({"dtype": "float16"})),
                                                     100.0, 2000.0).attainable_s * 1e3)
    # native on the CPU while the probe measured the GPU: rows, but no bound
    on_cpu = _bench(TINY)
    on_cpu["backends"]["native-fp16"]["description"]["device"] = "cpu"
    (row,) = roofline_rows(on_cpu, probe)
    assert row.bound.kind == "not known" and row.datasheet_peak_tflops is None and "no ceilings" in row.note


def test_no_rows_without_a_model_config():
    assert roofline_rows(_bench({"error": "offline"}), None) == []
    assert single_text_rows(_bench({"error": "offline"}), None) == []


def test_read_model_config_of_the_small_model(small_model_path):
    config = read_model_config(small_model_path)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (6, 384, 1536)
    assert (config["num_attention_heads"], config["vocab_size"]) == (12, 30522)


def test_read_model_config_never_raises(tmp_path):
    assert "error" in read_model_config(str(tmp_path / "missing"))


# --- the verdict's text, from synthetic figures -------------------------------------------------


def _gb10_bge_m3_results(ollama_short_p50_ms: float) -> tuple[dict, dict]:
    """The golden fixture's results, turned into a GB10-like probe and bge-m3's config, with
    Ollama's single-text latency on 'short' set to the given value (other sets far above the floor)."""
    bench = json.loads((FIXTURE / "bench.json").read_text())
    probe = json.loads((FIXTURE / "probe.json").read_text())
    bench["environment"]["model_config"] = dict(BGE_M3)
    for backend in bench["backends"].values():
        backend["description"]["dtype"] = "float16"
    for m in bench["measurements"]:
        if m["scenario"] == "single":
            value = {("ollama", "short"): ollama_short_p50_ms, ("native-fp16", "short"): 3.0}.get(
                (m["backend"], m["text_set"]), 500.0)
            m["samples"] = [{"value": value, "ok": True, "error": None} for _ in m["samples"]]
    for check in probe["checks"]:
        if check["name"] == "kernels":
            check["figures"]["matmul_tflops"] = {"fp32": 23.0, "fp16": 92.0, "bf16": 92.0}
        if check["name"] == "ceilings":
            check["figures"]["bandwidth_gbs"] = 273.0
    return probe, bench


def _render(probe, bench) -> str:
    from bench.report.verdict import build_context
    from probe.output import render_markdown

    ctx, _ = build_context(probe, bench)
    return render_markdown("verdict/verdict.md.j2", ctx)


def test_verdict_says_a_2x_speedup_is_out_of_reach_when_ollama_is_near_the_floor():
    probe, bench = _gb10_bge_m3_results(ollama_short_p50_ms=4.0)
    text = _render(probe, bench)
    # 'short' is 50-55 tokens: the floor of its median call is about 2.3 ms, Ollama (F32 activations) 2.4 ms
    assert "**Within 2× of the floor on 'short':** Ollama's single-text p50 (ollama) is 1.7" in text
    assert "physically out of reach on this GPU for any backend that reads the weights at 2 bytes each" in text
    assert "Above the floor: ollama 1.73× (p50 4.00 ms); native-fp16 1.30× (p50 3.00 ms)." in text
    assert "floor on 'long'" not in text and "floor on 'documents'" not in text
    assert "reported measurement for GB10" in text and "92.3 TFLOP/s" in text
    assert "not a datasheet figure and not the basis here" in text


def test_the_decision_reads_single_text_latency_against_the_floor_beside_not_in_it():
    from bench.report.verdict import build_context

    probe, bench = _gb10_bge_m3_results(ollama_short_p50_ms=4.0)
    _, decision = build_context(probe, bench)
    short = next(r for r in decision.reasons if r.startswith("beside the decision, single-text latency p50 on 'short'"))
    assert "floor 2.31 ms (memory-bound): native 1.30×, Ollama 1.73× the floor" in short
    assert "2× speed-up on this metric is out of reach for any backend here" in short
    far = next(r for r in decision.reasons if r.startswith("beside the decision, single-text latency p50 on 'long'"))
    assert "out of reach" not in far


def test_verdict_says_nothing_of_the_kind_when_ollama_is_far_above_the_floor():
    probe, bench = _gb10_bge_m3_results(ollama_short_p50_ms=10.0)
    text = _render(probe, bench)
    assert "Within 2× of the floor" not in text
    assert "The floor under single-text latency" in text


def test_verdict_roofline_on_a_cpu_probe():
    """A CPU-only probe (the smoke run): the native rows get the CPU's ceilings, Ollama placed on a GPU none."""
    probe, bench = _gb10_bge_m3_results(ollama_short_p50_ms=4.0)
    probe = copy.deepcopy(probe)
    probe["config"]["device"] = None
    probe["facts"]["device_name"] = None
    probe["checks"] = [c for c in probe["checks"] if c["name"] != "kernels"]
    ceilings = next(c for c in probe["checks"] if c["name"] == "ceilings")
    ceilings["figures"].update(device="cpu", memory="CPU main memory", bandwidth_gbs=17.0,
                               matmul_tflops={"fp32": 0.05, "fp16": 0.001})
    bench["backends"]["native-fp16"]["description"]["device"] = "cpu"
    rows = {r.backend: r for r in single_text_rows(bench, probe) if r.text_set == "short"}
    assert rows["native-fp16"].bound.kind == "compute"  # 0.001 TFLOP/s fp16 on the CPU
    assert rows["ollama"].bound.kind == "not known"  # the fake Ollama says cuda; no GPU ceilings here
    text = _render(probe, bench)
    assert "datasheet figures: none apply (the ceilings are the CPU's)" in text
    assert "measured ceilings (probe, CPU; memory measured: CPU main memory)" in text
