"""Writing results: atomic JSON (safe for NaN/inf) and Markdown rendered from templates/.

Shared by the probe and the bench so both stages write files the same way.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class ResultsFileError(Exception):
    """A results file is missing, truncated or of another schema version."""


# Top-level fields every reader relies on, with their JSON type, per kind of results file:
# a file that has the right kind and version but lacks one of these (hand-edited, or cut
# by another tool) gets a one-line error here instead of a KeyError deep in a reader.
REQUIRED_FIELDS: dict[str, dict[str, type]] = {
    "bench": {"status": str, "created_at": str, "config": dict, "environment": dict, "workload": dict,
              "backends": dict, "measurements": list, "truncation": list, "quality": list,
              "retrieval": list, "failures": list, "screening": list},
    "probe": {"created_at": str, "config": dict, "facts": dict, "checks": list, "overall": dict},
}


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, numpy scalars/arrays and paths to plain JSON types.

    NaN and +/-inf become the strings "NaN", "Infinity", "-Infinity": strict JSON
    has no such numbers and a figure must never silently turn into 0 or null.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temp file and a rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(payload), indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_results_json(path: Path, kind: str, schema_version: int) -> dict[str, Any]:
    """Read a results file written by this tool, or raise ResultsFileError saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: not found; run the {kind} stage first.") from None
    except IsADirectoryError:
        raise ResultsFileError(f"{path}: is a directory, not a {kind} results file.") from None
    except OSError as err:
        raise ResultsFileError(f"{path}: cannot be read ({err.strerror or err}).") from None
    except UnicodeDecodeError as err:
        raise ResultsFileError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            f"not a {kind} results file, or a damaged one. Re-run the {kind} stage."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsFileError(
            f"{path}: not valid JSON (line {err.lineno}: {err.msg}); the file is truncated or "
            f"not a {kind} result. Re-run the {kind} stage."
        ) from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ResultsFileError(f"{path}: not a {kind} results file.")
    found = data.get("schema_version")
    if found != schema_version:
        raise ResultsFileError(
            f"{path}: schema version {found}, this tool reads version {schema_version}. "
            f"Re-run the {kind} stage with this version of the tool."
        )
    for name, expected in REQUIRED_FIELDS.get(kind, {}).items():
        if not isinstance(data.get(name), expected):
            what = "missing" if name not in data else f"not a JSON {_JSON_TYPE_NAMES[expected]}"
            raise ResultsFileError(
                f"{path}: field {name!r} is {what}; the file is incomplete or damaged. Re-run the {kind} stage."
            )
    return data


_JSON_TYPE_NAMES = {str: "string", dict: "object", list: "array"}


def template_environment() -> jinja2.Environment:
    # StrictUndefined: a typo in a template must fail loudly, not render empty.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_markdown(template_name: str, context: Any) -> str:
    """Render one template with one prepared context object, exposed as `ctx`."""
    return template_environment().get_template(template_name).render(ctx=context)
