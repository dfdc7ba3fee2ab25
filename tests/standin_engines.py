"""The engines behind the Ollama-API stand-in (tests/ollama_standin.py): what an Ollama runner
would compute for one item. The stand-in adds only Ollama's own layer on top (normalisation,
prompt_eval_count, one item at a time, keep_alive, error texts).

* SentenceTransformerEngine: a small SentenceTransformer in this process; an over-long input
  is cut to the context, special tokens kept, or refused with Ollama's error text.
* LlamaServerEngine: a real llama.cpp llama-server, the runner Ollama >= 0.30 starts for every
  GGML model; vectors, token counts and refusals are llama.cpp's own.

Engines are not thread-safe: the stand-in calls them through its single runner slot.
Nothing an engine reports is an Ollama figure.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

INPUT_TOO_LONG = "the input length exceeds the context length"
CANNOT_TRUNCATE = "input exceeds maximum context length and cannot be truncated further"
TRUNCATED_TOO_LONG = "input after truncation exceeds maximum context length"
# llama.cpp's llama_vocab_type: WPM is BERT's WordPiece (all-MiniLM); UGM is XLM-R's Unigram (bge-m3).
VOCAB_WPM = 3
# llm/llama_server.go isEmbeddingInputLimitError: llama-server refusals Ollama turns into INPUT_TOO_LONG.
_INPUT_LIMIT_MARKERS = ("too large", "context size", "context length", "physical batch size",
                        "exceeds the available context")


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


DEFAULT_EMBEDDING_NUM_BATCH = 2048  # llm/llama_server.go DefaultEmbeddingNumBatch


def default_num_batch(num_ctx: int) -> int:
    """DefaultEmbeddingNumBatchForContext: what Ollama passes when nobody set num_batch."""
    return min(DEFAULT_EMBEDDING_NUM_BATCH, num_ctx) if num_ctx > 0 else DEFAULT_EMBEDDING_NUM_BATCH


def ollama_launch_args(num_ctx: int, num_batch: int | None = None, num_parallel: int = 1) -> list[str]:
    """The llama-server flags Ollama starts an embedding model with (llm/llama_server.go:
    `-c num_ctx*np -np np --embedding -b B -ub B`, B = embeddingBatchSize = min(num_batch,
    num_ctx*np), num_batch defaulting to min(2048, num_ctx))."""
    num_batch = default_num_batch(num_ctx) if num_batch is None else num_batch
    batch = min(num_batch, num_ctx * num_parallel)
    return ["-c", str(num_ctx * num_parallel), "-np", str(num_parallel), "-b", str(batch), "-ub", str(batch)]


class LlamaServerEngine:
    """A running llama-server (`--embedding`), started with ollama_launch_args for the stand-in's
    num_ctx: the runner's options are fixed when it starts, as in Ollama, where new options
    restart it. Follows ollama/ollama's llm/llama_server.go and server/routes.go:

    * each item is one POST /v1/embeddings {"input": text}; `usage.prompt_tokens` is its count.
      Models whose legacy vectors were raw (legacyEmbeddingsWereRaw: for BERT, a tokenizer other
      than WordPiece, e.g. bge-m3's) add "embd_normalize": -1; WordPiece models get llama-server's
      L2-normalised vector, so /api/embeddings is normalised for all-MiniLM;
    * /api/embed (embedWithRetry): with truncate (the default) the text is first cut to the
      context, min(num_ctx, model context) tokens less one each for the BOS and EOS the runner
      will add (/tokenize without special tokens, /detokenize); a runner refusal for length
      becomes 400 INPUT_TOO_LONG (normalizeEmbeddingError) and is retried once, cut to
      min(context, num_batch) -- the runner's physical batch, which is why Ollama >= 0.30 never
      embeds more than 2048 tokens by default. With truncate=false a text over the context is
      refused before the runner sees it.

    `num_batch` is the one the server was launched with (ollama_launch_args; None: Ollama's
    default): options are fixed when the runner starts, and this engine cannot restart a server
    the test owns.
    """

    format = "gguf"

    def __init__(self, url: str, timeout_s: float = 120.0, num_batch: int | None = None) -> None:
        self.num_batch = num_batch
        self.http = httpx.Client(base_url=url, timeout=timeout_s)
        entry = self.http.get("/v1/models").json()["data"][0]
        meta = entry["meta"]
        self.size_bytes = int(meta["size"])
        self.parameter_size = f"{meta['n_params'] / 1e6:.1f}M"
        self.context_length = int(meta["n_ctx_train"])
        self.embedding_length = int(meta["n_embd"])
        self.quantization_level = str(meta.get("ftype", "")).removeprefix("all ") or "unknown"
        self.raw_vectors = meta.get("vocab_type") != VOCAB_WPM
        special = self._tokenize("", add_special=True)
        self.bos, self.eos = (special[0], special[-1]) if special else (None, None)

    def close(self) -> None:
        self.http.close()

    def embed(self, text: str, ctx_len: int, truncate: bool) -> tuple[np.ndarray, int]:
        if not truncate:
            if len(self._tokenize(text, add_special=True)) > ctx_len:
                raise RunnerError(400, INPUT_TOO_LONG)
            return self._embedding(text)
        text, _ = self._cut(text, ctx_len)
        try:
            return self._embedding(text)
        except RunnerError as err:
            if err.status != 400:
                raise
        batch = default_num_batch(ctx_len) if self.num_batch is None else self.num_batch
        cut, was_cut = self._cut(text, min(ctx_len, batch))
        if not was_cut:
            raise RunnerError(400, CANNOT_TRUNCATE)
        return self._embedding(cut)

    def _cut(self, text: str, limit: int) -> tuple[str, bool]:
        """truncateInputToLimit: the text cut to `limit` tokens with BOS/EOS, and whether it was."""
        tokens = self._tokenize(text, add_special=False)
        if tokens and tokens[0] != self.bos:
            limit -= 1
        if tokens and tokens[-1] != self.eos:
            limit -= 1
        if limit <= 0:
            raise RunnerError(400, TRUNCATED_TOO_LONG)
        if len(tokens) <= limit:
            return text, False
        return self.http.post("/detokenize", json={"tokens": tokens[:limit]}).json()["content"], True

    def embed_legacy(self, prompt: str, ctx_len: int) -> np.ndarray:
        """EmbeddingsHandler: the runner's vector as it came; any runner error is a 500."""
        try:
            return self._embedding(prompt)[0]
        except RunnerError as err:
            raise RunnerError(500, err.message) from None

    def _embedding(self, text: str) -> tuple[np.ndarray, int]:
        body: dict[str, Any] = {"input": text}
        if self.raw_vectors:
            body["embd_normalize"] = -1
        response = self.http.post("/v1/embeddings", json=body)
        if response.status_code >= 400:
            raw = response.text.strip()
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw
            if any(marker in f"{message} {raw}".lower() for marker in _INPUT_LIMIT_MARKERS):
                raise RunnerError(400, INPUT_TOO_LONG)
            raise RunnerError(response.status_code, message)
        answer = response.json()
        vector = np.asarray(answer["data"][0]["embedding"], dtype=np.float32)
        return vector, int(answer["usage"]["prompt_tokens"])

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return list(self.http.post("/tokenize", json={"content": text, "add_special": add_special}).json()["tokens"])
