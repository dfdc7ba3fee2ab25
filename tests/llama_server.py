"""A real llama.cpp llama-server for tests: found in (or built into) the cache that
tools/build-llama-server.sh keeps, fed GGUF files made by tools/convert-to-gguf.sh, started
on a free loopback port and always stopped.

The script is the one place that knows where the cache is: asking it costs well under a
second when the server is built. Where it cannot be built (exit status 3: no cmake or
compiler) the tests that need it are skipped with the script's own reason; any other
failure (a broken build, no package index) fails them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "tools" / "build-llama-server.sh"
CONVERT_SCRIPT = REPO / "tools" / "convert-to-gguf.sh"
CANNOT_BUILD = 3  # build-llama-server.sh: a build tool is missing on this machine
START_TIMEOUT_S = 60.0


def _script_env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable}


def llama_cpp_dir() -> Path:
    """The cache folder (bin/llama-server, the converter), building it first if needed
    (about 9 minutes on 2 cores, once per sdist version)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=_script_env())
    if proc.returncode == CANNOT_BUILD:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        pytest.fail(f"tools/build-llama-server.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def convert(model_dir: str | Path, out_dir: Path, name: str, types: str = "f16 f32") -> dict[str, Path]:
    """{outtype: GGUF path} converted by llama.cpp's converter."""
    proc = subprocess.run(["bash", str(CONVERT_SCRIPT), str(model_dir), str(out_dir), name, types],
                          capture_output=True, text=True, env=_script_env())
    if proc.returncode == CANNOT_BUILD:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        pytest.fail(f"tools/convert-to-gguf.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    paths = [Path(line) for line in proc.stdout.split()]
    return {p.stem.rsplit("-", 1)[-1]: p for p in paths}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`llama-server -m GGUF --embedding ...` on 127.0.0.1; a context manager that always stops it.

    `args`: extra flags (e.g. ["-c", "512", "-ub", "512"]). `.url` is its root; `.log` its output.
    """

    def __init__(self, binary_dir: Path, gguf: Path, args: Sequence[str] = (), log_dir: Path | None = None) -> None:
        self.binary = binary_dir / "bin" / "llama-server"
        self.gguf = gguf
        self.args = list(args)
        self.port = free_port()
        self.log = (log_dir or gguf.parent) / f"llama-server-{self.port}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LlamaServer:
        command = [str(self.binary), "-m", str(self.gguf), "--embedding", "--host", "127.0.0.1",
                   "--port", str(self.port), "-t", "2", "--no-webui", *self.args]
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                pytest.fail(f"llama-server exited with {self._proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"llama-server not ready within {START_TIMEOUT_S:g} s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
