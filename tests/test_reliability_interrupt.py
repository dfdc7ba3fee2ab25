"""Issue 5, interrupt: SIGTERM (what `docker compose stop` sends) to a real `python -m bench run`
keeps what was measured, marked partial, exits 130; `--resume` finishes without re-measuring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _measured(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("measurements") else None


def test_sigterm_keeps_partial_results_and_resume_completes(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("Ein kurzer Text.\nA short text.\nUn texte court.\n", encoding="utf-8")
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--backend", "native-fp32",
               "--texts", str(texts), "--results", str(results), "--device", "cpu",
               "--ollama-host", "http://127.0.0.1:9"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}

    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while _measured(results / "bench.json") is None:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no measurement written within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert "interrupted" in output and "(status partial); continue with --resume" in output

    partial = json.loads((results / "bench.json").read_text(encoding="utf-8"))
    assert partial["status"] == "partial"
    before = {m["key"]: m for m in partial["measurements"]}
    assert before and len({m["scenario"] for m in before.values()}) < 4  # really cut short

    resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(complete)" in resumed.stderr
    final = json.loads((results / "bench.json").read_text(encoding="utf-8"))
    assert final["status"] == "complete"
    keys = [m["key"] for m in final["measurements"]]
    assert len(keys) == len(set(keys))  # no measurement repeated
    after = {m["key"]: m for m in final["measurements"]}
    for key, measurement in before.items():
        assert after[key]["samples"] == measurement["samples"]  # kept, not measured again
    assert {m["scenario"] for m in final["measurements"]} == {"single", "batch", "concurrency", "throughput"}
    assert final["created_at"] == partial["created_at"]
