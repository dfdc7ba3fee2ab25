"""A configurable in-memory backend for testing the bench loop without a model or a server.

It follows the EmbeddingBackend protocol; its vectors are a fixed random projection of
character counts, so two fakes with different noise give measurably different vectors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.backends.base import (
    BackendError,
    BackendOutOfMemory,
    EmbedResponse,
    LoadReport,
    MemoryFigure,
)


@dataclass
class FakeBehaviour:
    kind: str = "native"
    seconds_per_text: float = 0.0005
    noise: float = 0.0
    max_batch: int | None = None  # larger batches raise BackendOutOfMemory
    token_limit: int | None = None  # reported tokens are capped here (truncation)
    fail_load: str | None = None
    fail_after_calls: int | None = None  # every call after this many raises BackendError
    nan_rows: tuple[int, ...] = ()
    count_tokens: Callable[[str], int] | None = None  # None: the fake reports no token counts
    one_call_per_text: bool = False  # like Ollama's legacy /api/embeddings
    interrupt_after_calls: int | None = None  # raise KeyboardInterrupt, like Ctrl-C
    fail_texts: frozenset[str] = frozenset()  # a call holding any of these fails, like bge-m3's NaN in Ollama
    fail_batches_over: int | None = None  # a call with more texts fails (HTTP 500), each text alone works
    dtype: str = "float32"  # what describe() reports (the roofline's precision)
    offload: str | None = "gpu"  # what an Ollama-kind fake reports as its placement (/api/ps)
    calls: int = field(default=0)
    prepared: set[str] = field(default_factory=set)  # texts passed to prepare()
    unprepared_embeds: int = 0  # embed calls holding a text prepare() never saw


class FakeBackend:
    def __init__(self, name: str, behaviour: FakeBehaviour, dim: int = 16) -> None:
        self.name = name
        self.behaviour = behaviour
        self.projection = np.random.default_rng(0).normal(size=(128, dim))
        self.loaded = False

    async def load(self) -> LoadReport:
        if self.behaviour.fail_load:
            raise BackendError(self.behaviour.fail_load)
        self.loaded = True
        return LoadReport(wall_s=0.01, reported_load_s=0.005, reported_source="fake", cold=True,
                          includes="fake: nothing loaded")

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        self.behaviour.prepared.update(texts)

    def _vector(self, text: str) -> np.ndarray:
        counts = np.zeros(128)
        for ch in text:
            counts[ord(ch) % 128] += 1
        vec = counts @ self.projection
        if self.behaviour.noise:
            seed = sum(map(ord, text)) % 10_000
            vec = vec + self.behaviour.noise * np.linalg.norm(vec) * np.random.default_rng(seed).normal(size=vec.shape)
        return vec / (np.linalg.norm(vec) or 1.0)

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        b = self.behaviour
        b.calls += 1
        b.unprepared_embeds += any(t not in b.prepared for t in texts)
        if b.interrupt_after_calls is not None and b.calls > b.interrupt_after_calls:
            raise KeyboardInterrupt
        if b.fail_after_calls is not None and b.calls > b.fail_after_calls:
            raise BackendError("fake server died")
        if b.fail_texts & set(texts):
            raise BackendError("fake server answered HTTP 500: embedding contains NaN or Inf values", http_status=500)
        if b.max_batch is not None and len(texts) > b.max_batch:
            raise BackendOutOfMemory(f"{len(texts)} texts > {b.max_batch}")
        if b.fail_batches_over is not None and len(texts) > b.fail_batches_over:
            raise BackendError(f"fake server answered HTTP 500: a batch of {len(texts)} failed", http_status=500)
        started = time.perf_counter()
        await asyncio.sleep(b.seconds_per_text * len(texts))
        vectors = np.stack([self._vector(t) for t in texts]).astype(np.float32)
        for row in b.nan_rows:
            for i, t in enumerate(texts):
                if t.startswith(f"#{row} "):
                    vectors[i, 0] = np.nan
        prompt_tokens = None
        if b.count_tokens is not None:
            tokens = [b.count_tokens(t) for t in texts]
            if b.token_limit is not None:
                tokens = [min(n, b.token_limit) for n in tokens]
            prompt_tokens = sum(tokens)
        return EmbedResponse(vectors, prompt_tokens, time.perf_counter() - started)

    async def unload(self) -> None:
        self.loaded = False

    async def memory(self) -> list[MemoryFigure]:
        return [MemoryFigure("fake peak", 1024 * 1024, "fake allocator", attributable=True)]

    def describe(self) -> dict:
        return {"kind": self.behaviour.kind, "device": "cuda", "model": "fake", "dtype": self.behaviour.dtype,
                "max_tokens": self.behaviour.token_limit, "max_tokens_source": "fake limit",
                "one_call_per_text": self.behaviour.one_call_per_text,
                **({"offload": self.behaviour.offload} if self.behaviour.kind == "ollama" else {})}
