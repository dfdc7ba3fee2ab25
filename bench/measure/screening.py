"""Per-text failures: which texts of a set a backend cannot embed, found before anything is timed.

Users of Ollama with bge-m3 report texts that fail on their own: HTTP 500 for NaN vectors on
some GPUs (ollama/ollama#13572, #14657, #15582, #16625), inputs over the context on the
legacy `/api/embeddings`, llama-server refusing inputs larger than its physical batch. In a
list request one such text fails the whole request. Timing those calls would time errors,
and calling the backend "incomplete" would throw away everything else, so each text set is
screened first, untimed (it also warms the backend up):

1. the set in batches of at most SCREEN_TOKEN_BUDGET padded tokens (bench/measure/batching.py);
2. a batch that fails with an error the server answered (any BackendError but
   BackendUnavailable) is retried item by item;
3. an item that fails alone is tried once more: failing again makes it a TextFailure (the
   second error is kept, with the first when they differ); succeeding makes it "flaky" --
   it stays in the set, and a later timed failure counts as any failed call does.

Infrastructure is not texts: BackendUnavailable (refused, timed out, dropped) propagates.
A set where every text failed is recorded as such (ScreenRecord.every_text_failed): that
backend is not measured on it, and its failures do not take the texts away from the others.
A batch that failed while every text alone worked is kept as a batch error (not a text's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.backends.base import BackendError, BackendUnavailable, EmbeddingBackend
from bench.measure.batching import token_budget_batches
from bench.results import ScreenRecord, TextFailure

# Padded tokens per screening call: large enough to be quick, small enough for any device
# (a text over the budget runs alone, as in the token-budget throughput passes).
SCREEN_TOKEN_BUDGET = 8192


async def _try(backend: EmbeddingBackend, texts: list[str]) -> BackendError | None:
    """None when the call worked, else the error it raised; infrastructure errors propagate."""
    try:
        await backend.embed(texts)
    except BackendUnavailable:
        raise
    except BackendError as err:
        return err
    return None


async def screen_texts(backend: EmbeddingBackend, text_set: str, texts: Sequence[str],
                       token_counts: Sequence[int], advance: Callable[[int], None] = lambda n: None) -> ScreenRecord:
    """Find the texts `backend` cannot embed (see the module docstring). `token_counts`: as the
    backend runs them (capped at its max tokens), for the batch plan."""
    failures: list[TextFailure] = []
    flaky: list[int] = []
    batch_errors: list[str] = []
    calls = 0
    for batch in token_budget_batches(token_counts, SCREEN_TOKEN_BUDGET):
        calls += 1
        batch_error = await _try(backend, [texts[i] for i in batch])
        if batch_error is None:
            advance(len(batch))
            continue
        found = len(failures) + len(flaky)
        for i in batch:  # one text failed the whole call: find which
            calls += 1
            first = await _try(backend, [texts[i]])
            if first is not None:
                calls += 1
                second = await _try(backend, [texts[i]])
                if second is None:
                    flaky.append(i)
                else:
                    error = str(second) if str(second) == str(first) else f"{second} (first try: {first})"
                    failures.append(TextFailure(backend.name, text_set, i, error, second.http_status))
            advance(1)
        if len(failures) + len(flaky) == found and len(batch) > 1:
            batch_errors.append(f"a batch of {len(batch)} texts failed, each alone worked: {batch_error}")
    return ScreenRecord(backend.name, text_set, tuple(sorted(failures, key=lambda f: f.index)),
                        tuple(sorted(flaky)), calls, len(texts), tuple(batch_errors))
