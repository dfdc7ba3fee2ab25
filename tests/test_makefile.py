"""The Makefile as make reads it (`make -n`: printed, never run): one results folder for make and
compose, verdict and attach in the image under RUNNER=docker, and RUNNER=auto saying why it chose
local. Fake `docker` commands on PATH stand in for the engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")


def make_n(*args: str, path: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RESULTS", "RESULTS_DIR", "RUNNER", "MAKEFLAGS")}
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run([MAKE, "-n", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def fake_bin(tmp_path: Path, docker: str | None) -> str:
    """A PATH with sh and, if given, a `docker` script with this body."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "sh").symlink_to(shutil.which("sh"))
    if docker is not None:
        script = folder / "docker"
        script.write_text(f"#!{shutil.which('sh')}\n{docker}\n")
        script.chmod(0o755)
    return str(folder)


HOST_RESULTS = re.compile(r"(?<![/\w.-])results\b(?!/)")  # a host path "results", not "/results" or "--results"


def test_bench_under_docker_uses_one_results_folder_throughout():
    lines = make_n("bench", "RUNNER=docker", "RESULTS=other")
    assert lines[0] == "mkdir -p other"
    compose = [line for line in lines if "docker compose" in line]
    assert len(compose) == 6 and all(line.startswith("RESULTS_DIR=other docker compose") for line in compose)
    assert all(line.count("docker compose") == line.count("RESULTS_DIR=other docker compose") for line in lines)
    for line in lines:
        assert not HOST_RESULTS.search(line.replace("--results /results", "")), line
    assert sum("--results /results" in line for line in lines) == 3  # probe, bench run, verdict: the mount


def test_verdict_and_attach_under_docker_run_in_the_image(tmp_path):
    verdict = make_n("verdict", "RUNNER=docker", "RESULTS=other")
    assert verdict == ["RESULTS_DIR=other docker compose run --rm --no-deps bench python -m bench verdict "
                       "--results /results"]
    real = tmp_path / "tickets" / "TD-073.md"
    real.parent.mkdir()
    real.write_text("# TD-073\n")
    link = tmp_path / "ticket-link.md"
    link.symlink_to(real)
    attach = " ".join(make_n("attach", "RUNNER=docker", "RESULTS=other", f"TICKET={link}"))
    assert (f'RESULTS_DIR=other docker compose run --rm --no-deps -v "{real.parent}/:/ticket" bench' in attach)
    assert 'python -m bench attach --results /results "/ticket/TD-073.md"' in attach
    assert ".venv" not in attach and "python3" not in attach  # no host Python environment needed


def test_local_runner_uses_the_same_folder():
    lines = make_n("bench", "RUNNER=local", "RESULTS=other")
    assert [line.split(" --results ")[1].split()[0] for line in lines if "--results" in line] == ["other"] * 3
    assert not any("RUNNER=auto" in line for line in lines)  # chosen, not guessed: nothing to explain


@pytest.mark.parametrize("docker, says", [
    (None, "RUNNER=auto chose local: no docker command on PATH"),
    ("echo 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock'"
     " >&2; exit 1",
     "RUNNER=auto chose local: docker info was refused (permission denied on the Docker socket)"),
    ("echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2; exit 1",
     "RUNNER=auto chose local: no Docker engine answered docker info"),
    ("echo '{\"io.containerd.runc.v2\":{\"path\":\"runc\"},\"runc\":{\"path\":\"runc\"}}'",
     "RUNNER=auto chose local: the Docker engine has no nvidia runtime"),
])
def test_auto_says_why_it_chose_local(tmp_path, docker, says):
    lines = make_n("bench", "RESULTS=other", path=fake_bin(tmp_path, docker))
    assert lines[0].startswith(f"echo '{says}")
    assert any(line.endswith("-m bench run --profile td073 --results other ") for line in lines)


def test_auto_picks_docker_when_the_nvidia_runtime_answers(tmp_path):
    docker = "echo '{\"nvidia\":{\"path\":\"nvidia-container-runtime\"},\"runc\":{\"path\":\"runc\"}}'"
    lines = make_n("bench", "RESULTS=other", path=fake_bin(tmp_path, docker))
    assert lines[0] == "mkdir -p other" and not any("chose local" in line for line in lines)
