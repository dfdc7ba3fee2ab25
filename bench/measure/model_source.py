"""Where the native model's files come from, settled once before anything loads the model.

A hub name (`BAAI/bge-m3`) is looked up in the Hugging Face cache; a folder (or a
`package:<module>` spec, see config.resolve_model) is read as it is. Then:

- in the cache, or a folder: the hub client is switched to offline mode, so every later load
  (tokenizer, probe, backends) reads exactly these files and makes no network round trip
  inside a timed load;
- not cached and the hub answers: downloaded once, up front, with the hub's progress bars on
  (the native backend turns them off for its own loads), so the cold-load figure never
  includes a download;
- not cached and the hub does not answer (a TCP connect with a short timeout, through the
  HTTPS proxy when one is set): one error line naming the ways on, instead of the hub
  client's minutes of retries.

The identity recorded for the verdict is the model's name and revision: the commit hash of
the cache's snapshot folder for a hub model, a sha256 over a folder's files otherwise.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.config import resolve_model

HUB_CONNECT_TIMEOUT_S = 3.0
# A snapshot holds the model once it has its config and weights (transformers' file names).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Files of a hub repository that neither sentence-transformers nor transformers read for a
# PyTorch load: other runtimes' exports and pictures (bge-m3 ships an ONNX export of the
# same size as its weights).
NOT_NEEDED_PREFIXES = ("onnx/", "openvino/", "imgs/", "coreml/")
NOT_NEEDED_SUFFIXES = (".onnx", ".onnx_data", ".h5", ".msgpack", ".ot", ".tflite", ".jpg", ".jpeg", ".png",
                       ".gif")

Say = Callable[[str], None]


@dataclass(frozen=True)
class ModelIdentity:
    """Which model was measured: name and revision for people, the folder as a detail."""

    name: str  # hub repository, PyPI distribution and version, or the folder's name
    revision: str | None  # HF commit hash, or "sha256:<hex>" over a folder's files
    revision_source: str
    path: str | None  # the folder the files were read from

    @property
    def label(self) -> str:
        """name @ revision; a folder digest cut to 16 hex digits (bench.json keeps all 64)."""
        if not self.revision:
            return self.name
        shown = self.revision[: len("sha256:") + 16] if self.revision.startswith("sha256:") else self.revision
        return f"{self.name} @ {shown}"


class ModelUnavailable(Exception):
    """The model cannot be had on this machine now; the message says the ways on."""


def model_identity(spec: str) -> ModelIdentity:
    """Name and revision of the configured model, from the cache or the folder; no network."""
    folder = Path(resolve_model(spec))
    if folder.is_dir():
        return _folder_identity(spec, folder)
    snapshot = cached_snapshot(spec)
    if snapshot is None:
        return ModelIdentity(spec, None, "not in the Hugging Face cache", None)
    return ModelIdentity(spec, snapshot.name, "Hugging Face cache (snapshot of refs/main)", str(snapshot))


def _folder_identity(spec: str, folder: Path) -> ModelIdentity:
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        repo = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
        return ModelIdentity(repo, folder.name, "Hugging Face cache (snapshot folder)", str(folder))
    digest = f"sha256:{folder_digest(folder)}"
    source = "sha256 over the folder's files"
    if spec.startswith("package:"):
        return ModelIdentity(_distribution_label(spec.removeprefix("package:")), digest, source, str(folder))
    return ModelIdentity(folder.name, digest, source, str(folder))


def _distribution_label(module: str) -> str:
    from importlib import metadata

    names = metadata.packages_distributions().get(module) or []
    if not names:
        return module
    return f"{names[0]} {metadata.version(names[0])} (PyPI package)"


def folder_digest(folder: Path) -> str:
    """sha256 over every file under `folder` (sorted relative path, then its bytes); hidden
    folders such as .cache are left out."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]))
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def cached_snapshot(repo_id: str) -> Path | None:
    """The cache's snapshot folder for refs/main when it holds config and weights; else None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repository name: not cached
        return None
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any((folder / name).exists() for name in WEIGHT_FILES) else None


def use_cache_only() -> None:
    """From here on the hub client reads only the cache: no HTTP, so no retries.

    The client reads HF_HUB_OFFLINE when it is imported; the environment covers later imports
    and child processes, the constant a client this process has imported already.
    """
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def hub_unreachable_reason(endpoint: str, timeout_s: float = HUB_CONNECT_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the hub (or the HTTPS proxy in front of it) opens within
    timeout_s; else why not. Name resolution has no timeout of its own, so the whole attempt
    runs on a daemon thread that is given up on after timeout_s."""
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or "", proxied.port or 80
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(None)
        except OSError as err:
            outcome.append(f"{host}:{port}: {err.strerror or err}")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout_s:g} s"


def files_to_fetch(names: Iterable[str]) -> list[str]:
    """The repository files a PyTorch load reads: one weights format (safetensors when the
    repository has it, as transformers prefers) and everything else but other runtimes'
    exports and pictures."""
    names = list(names)
    safetensors = any(n.endswith(".safetensors") and "/" not in n for n in names)

    def needed(name: str) -> bool:
        if name.startswith(NOT_NEEDED_PREFIXES) or name.lower().endswith(NOT_NEEDED_SUFFIXES):
            return False
        if safetensors and name.startswith("pytorch_model") and "/" not in name:
            return False
        return True

    return sorted(n for n in names if needed(n))


def download_model(repo_id: str, say: Say) -> None:
    """Fetch the files a PyTorch load needs into the cache, with the hub's progress bars on."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    info = HfApi().model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s.size or 0 for s in info.siblings or ()}
    files = files_to_fetch(siblings)
    size_gb = sum(siblings[f] for f in files) / 1e9
    say(f"downloading {repo_id} ({size_gb:.1f} GB, {len(files)} files) into {HF_HUB_CACHE}; only this once")
    was_disabled = are_progress_bars_disabled()
    enable_progress_bars()
    try:
        snapshot_download(repo_id, allow_patterns=files)
    finally:
        if was_disabled:
            disable_progress_bars()


def ensure_model(spec: str, say: Say, *, unreachable: Callable[[str], str | None] = hub_unreachable_reason,
                 download: Callable[[str, Say], None] = download_model) -> ModelIdentity:
    """Make the configured model loadable without the hub, or raise ModelUnavailable.

    Raises config.ConfigError for a `package:` spec whose package is not installed.
    """
    import huggingface_hub.constants as hub

    folder = Path(resolve_model(spec))
    if folder.is_dir():
        use_cache_only()
        return model_identity(spec)
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1:
        raise ModelUnavailable(f"model folder {spec} does not exist; pass an existing folder or a hub name "
                               "such as BAAI/bge-m3.")
    if cached_snapshot(spec) is None:
        why = "HF_HUB_OFFLINE is set" if hub.is_offline_mode() else unreachable(hub.ENDPOINT)
        if why is not None:
            use_cache_only()
            raise ModelUnavailable(
                f"{spec} is not in the Hugging Face cache ({hub.HF_HUB_CACHE}) and the hub at {hub.ENDPOINT} "
                f"cannot be reached ({why}). Run the small shipped model instead: make bench PROFILE=smoke; "
                f"or fetch {spec} where a hub is reachable (make fetch-model, or hf download {spec}) and use "
                "that cache (HF_HOME).")
        try:
            download(spec, say)
        except Exception as err:  # noqa: BLE001 - hub, network and disk errors all end the same way
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelUnavailable(f"downloading {spec} from {hub.ENDPOINT} failed ({first}); run the same "
                                   "command again to resume, or fetch it with hf download.") from None
        if cached_snapshot(spec) is None:
            raise ModelUnavailable(f"{spec} was downloaded but its config and weights are not in the cache "
                                   f"({hub.HF_HUB_CACHE}); is it a sentence-transformers model?")
    use_cache_only()
    return model_identity(spec)
