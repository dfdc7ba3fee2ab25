"""Which texts two backends embedded at different lengths, from each backend's own per-text
token count (the truncation records of the batch-size-1 pass).

A text one backend cuts at 256 tokens and another embeds whole at 387 gives two honest
vectors of two different inputs: their low cosine is a length finding, not an engine
disagreement. These pure functions find such texts so the verdict can report them as
truncation and judge the engines on the texts both embedded at the same length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Two engines' tokenizers may count a special token or two differently: a smaller difference
# is not a different input (the same slack as the runner's truncation check).
from bench.measure.throughput import TRUNCATION_SLACK_TOKENS as LENGTH_SLACK_TOKENS
from bench.measure.throughput import cut_indices


@dataclass(frozen=True)
class LengthMismatch:
    """Texts of one set that `a` and `b` embedded at different lengths.

    compared: texts with a count from both backends; indices: those whose counts differ by
    more than LENGTH_SLACK_TOKENS, with each side's count in a_tokens / b_tokens.
    """

    a: str
    b: str
    text_set: str
    compared: int
    indices: tuple[int, ...]
    a_tokens: tuple[int, ...]
    b_tokens: tuple[int, ...]

    def describe(self) -> str:
        """One plain sentence: how many texts, and which backend embedded how many tokens."""
        return (f"'{self.text_set}': {len(self.indices)} of {self.compared} texts embedded at different lengths "
                f"({self.a} {_span(self.a_tokens)} tokens, {self.b} {_span(self.b_tokens)})")


def _span(counts: Sequence[int]) -> str:
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}–{high}"


def embedded_tokens(bench: dict[str, Any], backend: str, text_set: str) -> tuple[int | None, ...] | None:
    """Per text, the tokens `backend` says it embedded; None when it reported no per-text counts."""
    record = next((t for t in bench["truncation"] if t["backend"] == backend and t["text_set"] == text_set), None)
    if record is None or all(n is None for n in record["reported_tokens"]):
        return None
    return tuple(record["reported_tokens"])


def length_mismatch(bench: dict[str, Any], a: str, b: str, text_set: str) -> LengthMismatch | None:
    """The texts `a` and `b` embedded at different lengths because one of them cut it; None when
    either has no per-text counts.

    Which texts a side cut is bench.measure.throughput.cut_indices (short of the workload's count
    and at the side's ceiling on the set). A count that differs elsewhere is a tokenizer
    difference, not a shorter input: such a text stays in the agreement figures, where a real
    disagreement shows as a low cosine.
    """
    counts_a, counts_b = embedded_tokens(bench, a, text_set), embedded_tokens(bench, b, text_set)
    if counts_a is None or counts_b is None:
        return None
    expected = _workload_counts(bench, text_set)
    both = [(i, x, y) for i, (x, y) in enumerate(zip(counts_a, counts_b)) if x is not None and y is not None]
    # Without the workload's counts nothing tells a cut from a tokenizer difference: count any as a cut.
    cut = (set(cut_indices(expected, counts_a)) | set(cut_indices(expected, counts_b))) if expected else None
    differ = [(i, x, y) for i, x, y in both if abs(x - y) > LENGTH_SLACK_TOKENS and (cut is None or i in cut)]
    return LengthMismatch(a, b, text_set, len(both), tuple(i for i, _, _ in differ),
                          tuple(x for _, x, _ in differ), tuple(y for _, _, y in differ))


def _workload_counts(bench: dict[str, Any], text_set: str) -> list[int] | None:
    """The workload tokenizer's count per text of a set (special tokens included)."""
    entry = next((s for s in bench["workload"]["sets"] if s["name"] == text_set), None)
    return list(entry["token_counts"]) if entry and entry.get("token_counts") else None


@dataclass(frozen=True)
class AgreementFigures:
    """A quality record's figures over the texts its two backends embedded at the same length."""

    cosine: dict[str, Any]
    spearman: dict[str, Any]
    neighbours: dict[str, Any]
    left_out: int  # texts embedded at different lengths, not in the figures above (nor are texts
    # a backend could not embed at all: the record's `excluded`)


def same_length_agreement(bench: dict[str, Any], q: dict[str, Any]) -> AgreementFigures:
    """The record's own figures when every text was embedded at the same length by both; else the
    cosine over the rest, and no rank statistics (pairs and neighbours mix in the other inputs)."""
    from bench.analyse.quality import summarize_cosine
    from probe.output import to_jsonable

    mismatch = length_mismatch(bench, q["control"], q["treatment"], q["text_set"])
    if mismatch is None or not mismatch.indices:
        return AgreementFigures(q["cosine"], q["spearman"], q["neighbours"], 0)
    left_out = set(mismatch.indices) | set(q.get("excluded", ()))
    kept = [float(c) for i, c in enumerate(q["per_text_cosine"]) if i not in left_out]
    return AgreementFigures(to_jsonable(summarize_cosine(kept)), {}, {}, len(mismatch.indices))
