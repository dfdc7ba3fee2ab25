"""BEIR-format retrieval data, dense retrieval and nDCG@k / Recall@k.

Data (BEIR's ``GenericDataLoader`` layout, split ``test``)::

    folder/corpus.jsonl     {"_id", "title", "text"}; document text = title + " " + text
                            when the title is non-empty, else text
    folder/queries.jsonl    {"_id", "text"}
    folder/qrels/test.tsv   header "query-id<TAB>corpus-id<TAB>score", integer scores

As in BEIR, ``BeirData.queries`` keeps only the queries that appear in the qrels (in
queries.jsonl order). Every problem raises :class:`BeirError` with one line naming the
file and line. Qrels referencing ids that are not in corpus.jsonl / queries.jsonl are an
**error**, not a warning: a relevant document that can never be retrieved silently caps
Recall, and a qrels query without text cannot be embedded. Subsample a data set by
filtering all three files consistently.

Metrics follow trec_eval's ``ndcg_cut`` / ``recall`` as used by BEIR through
pytrec_eval (``EvaluateRetrieval.evaluate``):

* nDCG@k: DCG = Σ_{rank=1..k} gain / log2(rank + 1) with the **linear** gain
  gain = qrels score (trec_eval's ``gain = rel_level``, not 2^rel − 1; scores ≤ 0 and
  unjudged documents gain 0); ideal DCG from the qrels' scores sorted descending and
  cut at k.
* Recall@k = |relevant ∩ top-k| / |relevant|, relevant = qrels score > 0.
* Ranking inside a run: score descending, then document id **ascending**. trec_eval
  (hence pytrec_eval/BEIR) breaks exact score ties by document id *descending*; results
  differ from pytrec_eval only when two documents tie exactly at the cut-off.
* Queries with no relevant document in the qrels are skipped (listed in
  ``MetricResult.skipped_no_relevant``); pytrec_eval would score them 0. A qrels query
  with relevant documents but missing from the run scores 0 and is listed in
  ``missing_from_run`` (pytrec_eval would leave it out of the mean). The mean is over
  the evaluated queries.
* ``ignore_identical_ids`` (default True, as BEIR): a document whose id equals the
  query id is removed from that query's ranking before cutting at k.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.analyse.quality import l2_normalise

QRELS_HEADER = ("query-id", "corpus-id", "score")
_QUERY_CHUNK = 256


class BeirError(Exception):
    """BEIR data could not be read; the message is one line naming file and line."""


@dataclass(frozen=True)
class BeirData:
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class MetricResult:
    """One metric at one cut-off: mean over evaluated queries plus each query's value."""

    name: str  # "ndcg" or "recall"
    k: int
    mean: float | None  # None when no query could be evaluated
    per_query: dict[str, float]
    skipped_no_relevant: tuple[str, ...]
    missing_from_run: tuple[str, ...]

    @property
    def n_queries(self) -> int:
        return len(self.per_query)


# ---------------------------------------------------------------------------- loading


def _read_jsonl(path: Path, label: str) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BeirError(f"{label} line {line_no}: malformed JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise BeirError(f"{label} line {line_no}: expected a JSON object")
            rows.append((line_no, obj))
    return rows


def _string_field(obj: dict, key: str, label: str, line_no: int, *, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise BeirError(f"{label} line {line_no}: missing field {key!r}")
        return ""
    if isinstance(value, (int, float)) and key == "_id" and not isinstance(value, bool):
        return str(value)  # some BEIR sets store numeric ids
    if not isinstance(value, str):
        raise BeirError(f"{label} line {line_no}: field {key!r} must be a string")
    return value


def _load_texts(path: Path, label: str, with_title: bool) -> dict[str, str]:
    """corpus.jsonl (title + text) or queries.jsonl (text): {_id: text}, ids unique."""
    texts: dict[str, str] = {}
    for line_no, obj in _read_jsonl(path, label):
        text_id = _string_field(obj, "_id", label, line_no, required=True)
        text = _string_field(obj, "text", label, line_no, required=True)
        title = _string_field(obj, "title", label, line_no, required=False) if with_title else ""
        if text_id in texts:
            raise BeirError(f"{label} line {line_no}: duplicate _id {text_id!r}")
        texts[text_id] = f"{title} {text}" if title.strip() else text
    return texts


def _load_corpus(path: Path) -> dict[str, str]:
    return _load_texts(path, "corpus.jsonl", with_title=True)


def _load_queries(path: Path) -> dict[str, str]:
    return _load_texts(path, "queries.jsonl", with_title=False)


def _load_qrels(path: Path, corpus: Mapping[str, str], queries: Mapping[str, str]) -> dict[str, dict[str, int]]:
    label = "qrels/test.tsv"
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines or tuple(part.strip() for part in lines[0].split("\t")) != QRELS_HEADER:
        raise BeirError(f"{label} line 1: expected header {'<TAB>'.join(QRELS_HEADER)}")
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise BeirError(f"{label} line {line_no}: expected 3 tab-separated fields, got {len(parts)}")
        query_id, doc_id, raw_score = (part.strip() for part in parts)
        try:
            score = int(raw_score)
        except ValueError:
            raise BeirError(f"{label} line {line_no}: score {raw_score!r} is not an integer") from None
        if query_id not in queries:
            raise BeirError(f"{label} line {line_no}: query-id {query_id!r} not in queries.jsonl")
        if doc_id not in corpus:
            raise BeirError(f"{label} line {line_no}: corpus-id {doc_id!r} not in corpus.jsonl")
        qrels.setdefault(query_id, {})[doc_id] = score
    if not qrels:
        raise BeirError(f"{label}: no judgements after the header")
    return qrels


def load_beir(folder: str | Path) -> BeirData:
    """Read a BEIR-format folder (test split). Raises BeirError on any problem."""
    root = Path(folder)
    if not root.is_dir():
        raise BeirError(f"BEIR folder {str(root)!r} missing")
    paths = {name: root / name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")}
    for name, path in paths.items():
        if not path.is_file():
            raise BeirError(f"{name} missing in {root}")
    corpus = _load_corpus(paths["corpus.jsonl"])
    all_queries = _load_queries(paths["queries.jsonl"])
    qrels = _load_qrels(paths["qrels/test.tsv"], corpus, all_queries)
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return BeirData(corpus=corpus, queries=queries, qrels=qrels)


# ---------------------------------------------------------------------------- retrieval


def _check_ids(name: str, ids: Sequence[str], rows: int) -> list[str]:
    ids = [str(x) for x in ids]
    if len(ids) != rows:
        raise ValueError(f"{name}: {len(ids)} ids for {rows} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: ids must be unique")
    return ids


def retrieve(
    query_vecs: np.ndarray,
    query_ids: Sequence[str],
    doc_vecs: np.ndarray,
    doc_ids: Sequence[str],
    k: int,
) -> dict[str, dict[str, float]]:
    """Exact cosine top-k per query: {query_id: {doc_id: cosine}}.

    Order (and which documents make the cut): cosine descending, then doc id ascending.
    A document with a non-finite or zero vector is never retrieved; a query with one
    gets an empty result (so its metrics are 0, not skipped).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q_unit = l2_normalise(query_vecs)
    d_unit = l2_normalise(doc_vecs)
    if q_unit.shape[1] != d_unit.shape[1]:
        raise ValueError(f"dimension mismatch: queries {q_unit.shape[1]}, documents {d_unit.shape[1]}")
    qids = _check_ids("query_ids", query_ids, q_unit.shape[0])
    dids = _check_ids("doc_ids", doc_ids, d_unit.shape[0])
    id_rank = np.empty(len(dids), dtype=np.int64)
    id_rank[sorted(range(len(dids)), key=dids.__getitem__)] = np.arange(len(dids))
    doc_ok = np.all(np.isfinite(d_unit), axis=1)
    d_filled = np.where(doc_ok[:, None], d_unit, 0.0)
    usable_docs = int(doc_ok.sum())
    take = min(k, usable_docs)
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(qids), _QUERY_CHUNK):
        block = q_unit[start : start + _QUERY_CHUNK]
        block_ok = np.all(np.isfinite(block), axis=1)
        scores = np.where(block_ok[:, None], block, 0.0) @ d_filled.T
        scores[:, ~doc_ok] = -np.inf
        for offset, row in enumerate(scores):
            qid = qids[start + offset]
            if not block_ok[offset] or take == 0:
                run[qid] = {}
                continue
            if take < row.size:
                threshold = np.partition(row, row.size - take)[row.size - take]
                candidates = np.flatnonzero(row >= threshold)  # keeps every tie at the cut
            else:
                candidates = np.flatnonzero(np.isfinite(row))
            order = candidates[np.lexsort((id_rank[candidates], -row[candidates]))][:take]
            run[qid] = {dids[i]: float(row[i]) for i in order}
    return run


# ---------------------------------------------------------------------------- metrics


def ranked_doc_ids(scores: Mapping[str, float], k: int, *, exclude: str | None = None) -> list[str]:
    """The top-k document ids of one query's run: score descending, then id ascending."""
    items = [(doc_id, float(score)) for doc_id, score in scores.items() if doc_id != exclude]
    for doc_id, score in items:
        if math.isnan(score):
            raise ValueError(f"run score for document {doc_id!r} is NaN")
    items.sort(key=lambda item: (-item[1], item[0]))
    return [doc_id for doc_id, _ in items[:k]]


def _evaluate(
    name: str,
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int,
    ignore_identical_ids: bool,
    per_query_metric: Callable[[Sequence[str], Mapping[str, int], int], float],
) -> MetricResult:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    per_query: dict[str, float] = {}
    skipped: list[str] = []
    missing: list[str] = []
    for qid in sorted(qrels):
        judgements = qrels[qid]
        if not any(score > 0 for score in judgements.values()):
            skipped.append(qid)
            continue
        if qid not in run:
            missing.append(qid)
            per_query[qid] = 0.0
            continue
        ranking = ranked_doc_ids(run[qid], k, exclude=qid if ignore_identical_ids else None)
        per_query[qid] = per_query_metric(ranking, judgements, k)
    mean = float(np.mean(list(per_query.values()))) if per_query else None
    return MetricResult(name=name, k=k, mean=mean, per_query=per_query,
                        skipped_no_relevant=tuple(skipped), missing_from_run=tuple(missing))


def _ndcg_one(ranking: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    dcg = sum(max(judgements.get(doc_id, 0), 0) / math.log2(rank + 1) for rank, doc_id in enumerate(ranking, start=1))
    ideal_gains = sorted((score for score in judgements.values() if score > 0), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, start=1))
    return dcg / idcg


def _recall_one(ranking: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, score in judgements.items() if score > 0}
    return len(relevant.intersection(ranking)) / len(relevant)


def ndcg_at_k(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    *,
    ignore_identical_ids: bool = True,
) -> MetricResult:
    """nDCG@k as trec_eval ``ndcg_cut.k`` (linear gain), see module docstring."""
    return _evaluate("ndcg", run, qrels, k, ignore_identical_ids, _ndcg_one)


def recall_at_k(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    *,
    ignore_identical_ids: bool = True,
) -> MetricResult:
    """Recall@k as trec_eval ``recall.k`` (relevant = score > 0), see module docstring."""
    return _evaluate("recall", run, qrels, k, ignore_identical_ids, _recall_one)
