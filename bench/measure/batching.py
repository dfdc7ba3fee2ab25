"""Batch plans for the throughput sweep: pure functions over per-text token counts.

A batch of texts runs padded to its longest text, so its cost is len(batch) * max(tokens).
`token_budget_batches` caps that padded count instead of the number of texts, so a batch of
2000-token documents and a batch of 50-token queries both fill the device about equally.

Note on sentence-transformers: `SentenceTransformer.encode` already sorts the texts of one
call by length (character count, longest first) before cutting them into `batch_size`
chunks, and restores the input order afterwards. The bench's native backend passes each
batch as one call with `batch_size=len(texts)`, so that in-call sort changes nothing there;
what matters across many calls is the order the caller cuts batches in, which is what
`length_sorted_order` and `token_budget_batches` decide.
"""

from __future__ import annotations

from collections.abc import Sequence


def capped_counts(token_counts: Sequence[int], cap: int | None) -> list[int]:
    """Token counts as the backend runs them: cut at `cap` (its max tokens) when it has one."""
    if cap is None or cap <= 0:
        return [int(n) for n in token_counts]
    return [min(int(n), int(cap)) for n in token_counts]


def length_sorted_order(token_counts: Sequence[int]) -> list[int]:
    """Indices, longest text first; equal lengths keep their input order (a stable sort)."""
    return sorted(range(len(token_counts)), key=lambda i: (-token_counts[i], i))


def padded_tokens(token_counts: Sequence[int], batch: Sequence[int]) -> int:
    """Tokens one batch occupies after padding to its longest text."""
    return len(batch) * max((token_counts[i] for i in batch), default=0)


def token_budget_batches(token_counts: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Split texts into batches whose padded size len(batch) * max(tokens) is at most `max_tokens`.

    Texts are taken longest first (ties in input order), so each batch holds texts of
    similar length and its first text is its longest. A batch grows while one more text
    still fits the budget; a single text longer than the budget gets a batch of its own
    (it cannot be split). Returns lists of indices into `token_counts`; every index appears
    exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if any(n < 0 for n in token_counts):
        raise ValueError("token counts must be >= 0")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in length_sorted_order(token_counts):
        n = max(1, int(token_counts[i]))  # an empty text still takes a row
        if current and (len(current) + 1) * max(longest, n) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches
