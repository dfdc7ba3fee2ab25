"""The SDPA attention check: pure settings derivation on hand-made rows, the mask against
transformers' own, and the real matrix on CPU (small shapes) plus injected broken backends."""

from __future__ import annotations

import warnings

import pytest
import torch

from probe.checks.attention import (
    BACKENDS,
    ERROR,
    OK,
    SKIPPED,
    UNSUPPORTED,
    WRONG,
    Cell,
    MatrixPlan,
    Shape,
    apply_sdpa_settings,
    check_attention,
    current_sdpa_settings,
    derive_sdpa_settings,
    padding_mask,
    plan_for,
    sdpa_settings_applied,
    status_for,
    torch_sdpa_runner,
)
from probe.registry import ProbeContext
from probe.result import Status

ALL_ON = {"enable_flash_sdp": True, "enable_mem_efficient_sdp": True, "enable_cudnn_sdp": True, "enable_math_sdp": True}
TINY = MatrixPlan("cpu", (Shape(2, 128),), ("float32", "bfloat16"), max_repeats=2, max_cell_s=0.05)


def cell(backend: str, outcome: str, dtype: str = "float16", masked: bool = True, seq: int = 512) -> Cell:
    ran = outcome in (OK, WRONG)
    return Cell(
        backend=backend, dtype=dtype, batch=1, seq=seq, masked=masked, outcome=outcome,
        supported=outcome != UNSUPPORTED, ran=ran,
        max_abs_err={OK: 1e-4, WRONG: 0.8}.get(outcome), tolerance=1e-2,
        median_ms=1.0 if ran else None, count=3 if ran else 0, error=None,
    )


def rows(outcomes: dict[str, str], dtypes=("float16", "bfloat16")) -> list[Cell]:
    return [cell(b, outcomes.get(b, OK), dtype=d, masked=m) for d in dtypes for m in (False, True) for b in BACKENDS]


def ctx(device=None, quick=True) -> ProbeContext:
    return ProbeContext(model="unused", ollama_host="", ollama_model="", device=device, quick=quick)


# --- pure derivation -------------------------------------------------------------------------


def test_all_backends_fine_needs_no_workaround():
    decision = derive_sdpa_settings(rows({}))
    assert decision.settings == ALL_ON
    assert decision.workarounds == ()
    assert decision.broken == ()
    assert status_for(decision, rows({}), on_cpu=False)[0] is Status.PASS


def test_flash_with_large_error_is_disabled_and_listed():
    cells = rows({"FLASH_ATTENTION": WRONG})
    decision = derive_sdpa_settings(cells)
    assert decision.settings["enable_flash_sdp"] is False
    assert decision.settings["enable_mem_efficient_sdp"] is True
    assert decision.workarounds == ("torch.backends.cuda.enable_flash_sdp(False)",)
    assert decision.broken == ("FLASH_ATTENTION",)
    status, reason = status_for(decision, cells, on_cpu=False)
    assert status is Status.WARN
    assert "FLASH_ATTENTION (wrong)" in reason and "enable_flash_sdp(False)" in reason


def test_unsupported_is_not_broken():
    # "No viable backend": PyTorch's dispatcher falls back by itself, nothing to disable.
    cells = rows({"EFFICIENT_ATTENTION": UNSUPPORTED, "CUDNN_ATTENTION": UNSUPPORTED})
    decision = derive_sdpa_settings(cells)
    assert decision.settings == ALL_ON
    assert decision.workarounds == ()
    assert decision.unsupported == ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
    assert status_for(decision, cells, on_cpu=False)[0] is Status.PASS


def test_flash_unsupported_only_with_mask_is_still_fine():
    # Flash on CUDA refuses arbitrary masks; that is not a reason to disable it for unmasked batches.
    cells = [c if not (c.backend == "FLASH_ATTENTION" and c.masked) else cell("FLASH_ATTENTION", UNSUPPORTED, c.dtype)
             for c in rows({})]
    decision = derive_sdpa_settings(cells)
    assert decision.settings == ALL_ON and decision.unsupported == ()


def test_crash_after_dispatch_is_broken():
    cells = rows({"CUDNN_ATTENTION": ERROR})
    decision = derive_sdpa_settings(cells)
    assert decision.settings["enable_cudnn_sdp"] is False
    assert decision.workarounds == ("torch.backends.cuda.enable_cudnn_sdp(False)",)


def test_broken_in_one_dtype_disables_the_backend_globally():
    cells = [cell(b, WRONG if (b == "FLASH_ATTENTION" and d == "bfloat16") else OK, dtype=d)
             for d in ("float16", "bfloat16") for b in BACKENDS]
    assert derive_sdpa_settings(cells).settings["enable_flash_sdp"] is False


def test_math_is_never_disabled():
    cells = rows({"MATH": WRONG})
    decision = derive_sdpa_settings(cells)
    assert decision.settings["enable_math_sdp"] is True
    assert decision.broken == ("MATH",)
    assert decision.workarounds == ()
    assert status_for(decision, cells, on_cpu=False)[0] is Status.WARN


def test_skipped_cells_are_not_broken():
    decision = derive_sdpa_settings(rows({"FLASH_ATTENTION": SKIPPED}))
    assert decision.settings["enable_flash_sdp"] is True


def test_no_working_masked_backend_fails():
    cells = [cell(b, UNSUPPORTED if b != "MATH" else WRONG, masked=True) for b in BACKENDS]
    cells += [cell(b, OK, masked=False) for b in BACKENDS]
    status, reason = status_for(derive_sdpa_settings(cells), cells, on_cpu=False)
    assert status is Status.FAIL
    assert "padding mask" in reason


def test_only_a_disabled_backend_working_masked_does_not_count():
    # fp16 masked works only on flash, but flash is disabled (wrong in bf16) -> fp16 has no masked backend.
    cells = [cell(b, OK if b == "FLASH_ATTENTION" else UNSUPPORTED, dtype="float16") for b in BACKENDS]
    cells += [cell(b, WRONG if b == "FLASH_ATTENTION" else OK, dtype="bfloat16") for b in BACKENDS]
    decision = derive_sdpa_settings(cells)
    assert decision.masked_ok_dtypes == ("bfloat16",)
    status, reason = status_for(decision, cells, on_cpu=False)
    assert status is Status.WARN and "no working masked backend in float16" in reason


def test_cpu_reason_says_target_not_probed():
    assert status_for(derive_sdpa_settings(rows({})), rows({}), on_cpu=True)[1].startswith(
        "on CPU (target not probed)"
    )


# --- mask and plan ---------------------------------------------------------------------------


def test_padding_mask_equals_what_xlm_roberta_passes_to_sdpa():
    # BGE-M3 is XLM-R: build the mask through the same transformers function its SDPA path calls.
    from transformers import XLMRobertaConfig
    from transformers.masking_utils import create_bidirectional_mask

    shape = Shape(3, 64)
    ours = padding_mask(shape, "cpu")
    lengths = ours[:, 0, 0, :].sum(-1)
    assert lengths.tolist() == [64 - 64 // 12, 64 - 2 * 64 // 12, 64 - 3 * 64 // 12]
    config = XLMRobertaConfig()
    config._attn_implementation = "sdpa"
    attention_2d = (torch.arange(64)[None, :] < lengths[:, None]).long()  # the tokenizer's attention_mask
    theirs = create_bidirectional_mask(config=config, inputs_embeds=torch.zeros(3, 64, 8), attention_mask=attention_2d)
    assert theirs.dtype == torch.bool and ours.dtype == torch.bool
    assert torch.equal(ours, theirs)
    # No padding in the batch: transformers passes no mask at all (our unmasked case).
    assert create_bidirectional_mask(
        config=config, inputs_embeds=torch.zeros(3, 64, 8), attention_mask=torch.ones(3, 64, dtype=torch.long)
    ) is None


def test_plans():
    cpu = plan_for("cpu", quick=False)
    assert {s.seq for s in cpu.shapes} == {512, 1024} and all(s.batch == 1 for s in cpu.shapes)
    gpu = plan_for("cuda", quick=False)
    assert {s.seq for s in gpu.shapes} == {512, 2048, 8192}
    assert {"float16", "bfloat16"} <= set(gpu.dtypes)
    assert all((s.heads, s.head_dim) == (16, 64) for s in gpu.shapes)
    assert max(s.seq for s in plan_for("cuda", quick=True).shapes) == 2048
    assert [s.seq for s in plan_for("cpu", quick=True).shapes] == [512]


# --- real matrix on CPU ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_cpu_matrix():
    result = check_attention(ctx(), plan=TINY)
    cells = {(c["backend"], c["dtype"], c["masked"]): c for c in result.figures["cells"]}
    assert len(cells) == len(BACKENDS) * 2 * 2
    for dtype in ("float32", "bfloat16"):
        for masked in (False, True):
            math = cells[("MATH", dtype, masked)]
            assert math["outcome"] == OK and math["count"] >= 1 and math["median_ms"] > 0
            assert math["max_abs_err"] <= math["tolerance"]
            for backend in ("EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
                c = cells[(backend, dtype, masked)]
                assert c["outcome"] == UNSUPPORTED and "No viable backend" in c["error"]
    assert result.status is Status.PASS
    assert result.reason.startswith("on CPU (target not probed)")
    assert result.settings == ALL_ON and result.workarounds == ()
    assert result.figures["target_probed"] is False
    assert result.figures["shapes"] == [{"batch": 2, "seq": 128, "heads": 16, "head_dim": 64}]


def test_settings_are_shared_for_later_checks():
    context = ctx()
    result = check_attention(context, plan=TINY)
    assert context.shared["sdpa_settings"] == result.settings


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_matrix_quick():
    result = check_attention(ctx(device="cuda", quick=True))
    assert result.figures["target_probed"] is True
    assert not result.reason.startswith("on CPU")
    assert set(result.settings) == set(ALL_ON) and result.settings["enable_math_sdp"] is True
    masked_math = [c for c in result.figures["cells"] if c["backend"] == "MATH" and c["masked"]]
    assert masked_math and all(c["outcome"] == OK for c in masked_math)


def test_injected_broken_backends_are_reported_and_disabled():
    def fake_runner(backend, q, k, v, mask):
        if backend == "FLASH_ATTENTION":
            return torch.randn_like(q) * 10  # runs, wrong numbers
        if backend == "EFFICIENT_ATTENTION":
            warnings.warn("Memory efficient kernel not used because: head_dim must be a multiple of 8", stacklevel=1)
            raise RuntimeError("No viable backend for scaled_dot_product_attention was found.")
        if backend == "CUDNN_ATTENTION":
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
        return torch_sdpa_runner(backend, q, k, v, mask)

    result = check_attention(ctx(), runner=fake_runner, plan=TINY)
    assert result.status is Status.WARN
    assert result.settings == {**ALL_ON, "enable_flash_sdp": False, "enable_cudnn_sdp": False}
    assert set(result.workarounds) == {
        "torch.backends.cuda.enable_flash_sdp(False)",
        "torch.backends.cuda.enable_cudnn_sdp(False)",
    }
    by_backend = {}
    for c in result.figures["cells"]:
        by_backend.setdefault(c["backend"], set()).add(c["outcome"])
    assert by_backend == {"FLASH_ATTENTION": {WRONG}, "EFFICIENT_ATTENTION": {UNSUPPORTED},
                          "CUDNN_ATTENTION": {ERROR}, "MATH": {OK}}
    flash = next(c for c in result.figures["cells"] if c["backend"] == "FLASH_ATTENTION")
    assert flash["max_abs_err"] > flash["tolerance"] and "tolerance" in flash["error"]
    efficient = next(c for c in result.figures["cells"] if c["backend"] == "EFFICIENT_ATTENTION")
    assert "No viable backend" in efficient["error"] and "head_dim must be a multiple of 8" in efficient["error"]
    cudnn = next(c for c in result.figures["cells"] if c["backend"] == "CUDNN_ATTENTION")
    assert "no kernel image" in cudnn["error"]
    assert result.figures["broken_backends"] == ["FLASH_ATTENTION", "CUDNN_ATTENTION"]
    assert "FLASH_ATTENTION" in result.reason and "CUDNN_ATTENTION" in result.reason


def test_nan_output_counts_as_wrong():
    def nan_runner(backend, q, k, v, mask):
        out = torch_sdpa_runner("MATH", q, k, v, mask)
        return out.fill_(float("nan")) if backend == "FLASH_ATTENTION" else out

    result = check_attention(ctx(), runner=nan_runner, plan=TINY)
    flash = [c for c in result.figures["cells"] if c["backend"] == "FLASH_ATTENTION"]
    assert all(c["outcome"] == WRONG for c in flash)
    assert result.settings["enable_flash_sdp"] is False


def test_every_backend_raising_fails_the_check():
    def raising_runner(backend, q, k, v, mask):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    result = check_attention(ctx(), runner=raising_runner, plan=TINY)
    assert result.status is Status.FAIL
    assert result.reason.startswith("on CPU (target not probed)")
    assert all(c["outcome"] == ERROR for c in result.figures["cells"])


# --- applying the settings -------------------------------------------------------------------


def test_apply_and_restore_settings():
    before = current_sdpa_settings()
    with sdpa_settings_applied({"enable_flash_sdp": False, "enable_mem_efficient_sdp": True}):
        assert torch.backends.cuda.flash_sdp_enabled() is False
        assert torch.backends.cuda.mem_efficient_sdp_enabled() is True
    assert current_sdpa_settings() == before


def test_unknown_setting_is_an_error():
    with pytest.raises(KeyError):
        apply_sdpa_settings({"enable_turbo_sdp": True})
