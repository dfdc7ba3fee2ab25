"""Field knowledge: what Ollama + bge-m3 users report upstream, matched against bench.json.

The entries live in bench/data/field_knowledge.json (data, not code). Each has a `when` with
one or more conditions, all of which must hold:

  error_matches          a regex found in an Ollama-side failure (per-text or recorded)
  ollama_cut_at          an Ollama truncation record where some text reported exactly this
                         many tokens while the tokenizer counted more
  ollama_version_below   the Ollama server version recorded is older than this
  texts_longer_than      some text of the workload is longer than this many tokens

Pure functions over the bench.json payload; the verdict shows what matched next to the
Ollama version it recorded, and the README's troubleshooting table repeats every entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from bench.config import DATA_DIR

DATA = DATA_DIR / "field_knowledge.json"


@dataclass(frozen=True)
class KnownIssue:
    id: str
    when: dict[str, Any]
    symptom: str
    cause: str
    upstream: tuple[str, ...]
    fix: str

    def readme_row(self) -> str:
        return f"| {self.symptom} | {self.cause} ({', '.join(self.upstream)}) | {self.fix} |"


@dataclass(frozen=True)
class Match:
    issue: KnownIssue
    evidence: str  # what in bench.json matched, in words
    ollama_version: str | None


@cache
def known_issues() -> tuple[KnownIssue, ...]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return tuple(KnownIssue(e["id"], e["when"], e["symptom"], e["cause"], tuple(e["upstream"]), e["fix"])
                 for e in data["entries"])


def known_per_text_error(error: str) -> bool:
    """Does an error text match a failure users report for some texts only (NaN vectors, an input
    over the context or the physical batch)? A whole set failing with any other error looks like
    the server, not the texts."""
    return any(re.search(issue.when["error_matches"], error) for issue in known_issues()
               if "error_matches" in issue.when)


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch); None when unknown. Ollama built without a version says 0.0.0."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version or "")[:3])
    return numbers if numbers and any(numbers) else None


def _ollama_backends(bench: dict[str, Any]) -> list[str]:
    return [name for name, rec in bench["backends"].items()
            if ((rec or {}).get("description") or {}).get("kind") == "ollama"]


def _ollama_errors(bench: dict[str, Any], names: list[str]) -> list[tuple[str, str]]:
    """(where, error text) for every Ollama-side failure: per-text, per step, and load errors."""
    errors = [(f"{f['backend']} {r['text_set']} text {f['index']}", f["error"])
              for r in bench.get("screening", []) if r["backend"] in names for f in r["failures"]]
    errors += [(f"{f['backend']} {f.get('text_set') or ''} {f['scenario']}".replace("  ", " "), f["error"])
               for f in bench["failures"] if f["backend"] in names]
    return errors


def _condition(bench: dict[str, Any], names: list[str], version: str | None, key: str, value: Any) -> str | None:
    """Evidence in words when the condition holds, else None."""
    if key == "error_matches":
        pattern = re.compile(value)
        hits = [where for where, error in _ollama_errors(bench, names) if pattern.search(error)]
        return f"{len(hits)} failure(s), first: {hits[0]}" if hits else None
    if key == "ollama_cut_at":
        for t in bench["truncation"]:
            if t["backend"] not in names:
                continue
            cut = [i for i, (want, got) in enumerate(zip(t["expected_tokens"], t["reported_tokens"]))
                   if got == value and want > value]
            if cut:
                return f"{t['backend']} reported {value} tokens for {len(cut)} longer {t['text_set']} texts"
        return None
    if key == "ollama_version_below":
        have, limit = _version_tuple(version), _version_tuple(value)
        return f"Ollama {version} < {value}" if have and limit and have < limit else None
    if key == "texts_longer_than":
        longest = max((n for s in bench["workload"]["sets"] for n in s["token_counts"]), default=0)
        return f"longest text {longest} tokens" if longest > value else None
    raise ValueError(f"unknown condition {key!r} in {DATA}")


def matches(bench: dict[str, Any]) -> list[Match]:
    """The known issues whose every condition holds in this run."""
    names = _ollama_backends(bench)
    if not names:
        return []
    version = next((bench["backends"][n]["description"].get("server_version") for n in names
                    if bench["backends"][n]["description"].get("server_version")), None)
    found = []
    for issue in known_issues():
        evidence = [_condition(bench, names, version, k, v) for k, v in issue.when.items()]
        if all(evidence):
            found.append(Match(issue, "; ".join(evidence), version))
    return found
