"""The registry never lets a check raise, and the overall status follows the ticket's wording."""

from __future__ import annotations

import json

from probe.output import read_results_json
from probe.overall import derive_overall, merge_bench_settings
from probe.registry import Check, ProbeContext, run_checks
from probe.result import PROBE_SCHEMA_VERSION, CheckResult, Overall, Status
from probe.run import run_probe, write_probe_outputs

CRITICAL = frozenset({"kernels", "attention"})


def result(name, status, workarounds=(), settings=None):
    return CheckResult(name, name.title(), status, f"{name} {status.value}", {"n": 1},
                       settings or {}, tuple(workarounds))


def ctx(device="cuda"):
    return ProbeContext(model="m", ollama_host="http://127.0.0.1:1", ollama_model="bge-m3", device=device)


def test_raising_check_becomes_fail_and_later_checks_still_run():
    def boom(_ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    checks = [Check("kernels", "Kernels", boom), Check("attention", "Attention",
                                                       lambda c: result("attention", Status.PASS))]
    results = run_checks(checks, ctx())
    assert [r.status for r in results] == [Status.FAIL, Status.PASS]
    assert "RuntimeError: CUDA error: an illegal memory access" in results[0].reason
    assert all(r.duration_s is not None for r in results)


def test_all_pass_is_compatible_exit_0():
    overall = derive_overall([result("kernels", Status.PASS), result("attention", Status.PASS)], CRITICAL, True)
    assert overall.status is Overall.COMPATIBLE and overall.exit_code == 0


def test_workaround_makes_compatible_with_workarounds_listed():
    rs = [result("kernels", Status.PASS),
          result("attention", Status.WARN, ["torch.backends.cuda.enable_flash_sdp(False)"])]
    overall = derive_overall(rs, CRITICAL, True)
    assert overall.status is Overall.COMPATIBLE_WITH_WORKAROUNDS
    assert overall.workarounds == ("torch.backends.cuda.enable_flash_sdp(False)",)
    assert overall.exit_code == 0


def test_critical_failure_is_incompatible_exit_1_but_noncritical_is_not():
    overall = derive_overall([result("kernels", Status.FAIL)], CRITICAL, True)
    assert overall.status is Overall.INCOMPATIBLE and overall.exit_code == 1
    assert "kernels" in overall.reason
    overall = derive_overall([result("kernels", Status.PASS), result("triton", Status.FAIL)], CRITICAL, True)
    assert overall.status is Overall.COMPATIBLE
    assert "triton (fail)" in overall.reason


def test_without_device_the_target_is_not_probed_even_if_cpu_checks_fail():
    overall = derive_overall([result("kernels", Status.FAIL)], CRITICAL, target_probed=False)
    assert overall.status is Overall.NOT_PROBED
    assert "not" in overall.reason and "sm_121" in overall.reason
    assert "kernels" in overall.reason


def test_bench_settings_merge_in_check_order():
    rs = [result("a", Status.PASS, settings={"enable_flash_sdp": True}),
          result("b", Status.PASS, settings={"enable_flash_sdp": False, "x": 1})]
    assert merge_bench_settings(rs) == {"enable_flash_sdp": False, "x": 1}


def test_json_and_markdown_agree(tmp_path):
    checks = [
        Check("kernels", "Kernel smoke", lambda c: CheckResult(
            "kernels", "Kernel smoke", Status.PASS, "all ops within tolerance",
            {"ops": [{"op": "matmul", "dtype": "bf16", "tflops": 1.5}], "nan": float("nan")})),
        Check("attention", "Attention", lambda c: result("attention", Status.WARN,
                                                         ["torch.backends.cuda.enable_flash_sdp(False)"],
                                                         {"enable_flash_sdp": False})),
    ]
    report = run_probe(ctx(), checks, CRITICAL, {"torch_version": "2.13.0"})
    json_path, md_path = write_probe_outputs(report, tmp_path)
    data = read_results_json(json_path, "probe", PROBE_SCHEMA_VERSION)
    assert data["overall"]["status"] == "compatible with workarounds"
    assert data["bench_settings"] == {"enable_flash_sdp": False}
    assert data["checks"][0]["figures"]["nan"] == "NaN"  # never a bare NaN in JSON
    json.loads(json_path.read_text())  # strict JSON
    md = md_path.read_text()
    assert "**Overall: compatible with workarounds**" in md
    for check in data["checks"]:
        assert check["title"] in md
    assert "| matmul | bf16 | 1.5 |" in md
    assert "`torch.backends.cuda.enable_flash_sdp(False)`" in md


def test_critical_check_not_run_on_the_gpu_is_not_fully_probed_never_incompatible():
    rs = [result("kernels", Status.PASS), result("attention", Status.SKIP)]
    overall = derive_overall(rs, CRITICAL, True)
    assert overall.status is Overall.INCOMPLETE and overall.exit_code == 0
    assert "did not run" in overall.reason and "attention" in overall.reason
    # a real failure still wins: the GPU could not do something
    overall = derive_overall([result("kernels", Status.FAIL), result("attention", Status.SKIP)], CRITICAL, True)
    assert overall.status is Overall.INCOMPATIBLE
