"""The engines behind the Ollama-API stand-in (tests/ollama_standin.py): what an Ollama runner
would compute for one item. The stand-in adds only Ollama's own layer on top (normalisation,
prompt_eval_count, one item at a time, keep_alive, error texts).

* SentenceTransformerEngine: a small SentenceTransformer in this process; an over-long input
  is cut to the context, special tokens kept, or refused with Ollama's error text.

Engines are not thread-safe: the stand-in calls them through its single runner slot.
Nothing an engine reports is an Ollama figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INPUT_TOO_LONG = "the input length exceeds the context length"


class RunnerError(Exception):
    """An error answer for the request being handled: HTTP status and Ollama's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SentenceTransformerEngine:
    """Real vectors from a loaded SentenceTransformer (read only): its modules up to, not
    including, a Normalize module give the raw pooled vector a runner returns."""

    format = "safetensors"
    quantization_level = "F32"

    def __init__(self, model: Any) -> None:
        self.model = model
        params = sum(p.numel() for p in model.parameters())
        self.size_bytes = int(sum(p.numel() * p.element_size() for p in model.parameters()))
        self.parameter_size = f"{params / 1e6:.1f}M"
        self.context_length = int(model.max_seq_length)
        self.embedding_length = int(model.get_embedding_dimension())

    def embed(self, text: str, ctx_len: int, truncate: bool) -> tuple[np.ndarray, int]:
        """(raw vector, tokens embedded) for /api/embed: cut to ctx_len, or 400 when truncate is off."""
        ids = self.tokenize(text)
        if len(ids) > ctx_len:
            if not truncate:
                raise RunnerError(400, INPUT_TOO_LONG)
            ids = self.tokenize(text, max_tokens=ctx_len)
        return self.raw_vector(ids), len(ids)

    def embed_legacy(self, prompt: str, ctx_len: int) -> np.ndarray:
        """The vector /api/embeddings returns: raw; an over-long prompt is a 500."""
        ids = self.tokenize(prompt)
        if len(ids) > ctx_len:
            raise RunnerError(500, INPUT_TOO_LONG)
        return self.raw_vector(ids)

    def tokenize(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Token ids with special tokens, cut to max_tokens (special tokens kept)."""
        tok = self.model.tokenizer
        if max_tokens is None:
            return list(tok(text, verbose=False)["input_ids"])
        return list(tok(text, truncation=True, max_length=max_tokens, verbose=False)["input_ids"])

    def raw_vector(self, ids: list[int]) -> np.ndarray:
        """The pooled vector before any Normalize module (what a runner returns)."""
        import torch

        t = torch.tensor([ids])
        features: dict[str, Any] = {
            "input_ids": t,
            "attention_mask": torch.ones_like(t),
            "token_type_ids": torch.zeros_like(t),
        }
        with torch.inference_mode():
            for module in self.model:
                if type(module).__name__ == "Normalize":
                    break
                features = module(features)
        return features["sentence_embedding"][0].float().numpy()
