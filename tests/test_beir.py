"""bench.analyse.beir: loader errors on tmp_path fixtures, retrieval tie-break, nDCG/Recall by hand
and (when pytrec_eval is installed) against trec_eval itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.analyse.beir import (
    BeirData,
    BeirError,
    load_beir,
    ndcg_at_k,
    recall_at_k,
    retrieve,
)

NAN = float("nan")

# ------------------------------------------------------------------ loader

CORPUS = [
    {"_id": "d1", "title": "Spark", "text": "GB10 has 128 GB unified memory."},
    {"_id": "d2", "title": "", "text": "Ollama serves bge-m3."},
    {"_id": "d3", "text": "No title field at all."},
]
QUERIES = [
    {"_id": "q1", "text": "how much memory"},
    {"_id": "q2", "text": "who serves bge-m3"},
    {"_id": "q9", "text": "not judged"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\nq2\td2\t1\n"


def _jsonl(rows):
    return rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)


def _write(folder, corpus=None, queries=None, qrels=None):
    folder.mkdir(parents=True, exist_ok=True)
    if corpus is not None:
        (folder / "corpus.jsonl").write_text(_jsonl(corpus), encoding="utf-8")
    if queries is not None:
        (folder / "queries.jsonl").write_text(_jsonl(queries), encoding="utf-8")
    if qrels is not None:
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_load_beir_valid(tmp_path):
    data = load_beir(_write(tmp_path / "ds", CORPUS, QUERIES, QRELS))
    assert isinstance(data, BeirData)
    assert data.corpus == {
        "d1": "Spark GB10 has 128 GB unified memory.",
        "d2": "Ollama serves bge-m3.",
        "d3": "No title field at all.",
    }
    assert data.queries == {"q1": "how much memory", "q2": "who serves bge-m3"}  # q9 has no qrels
    assert data.qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}


def test_load_beir_accepts_str_path_and_blank_lines(tmp_path):
    folder = _write(tmp_path / "ds", json.dumps(CORPUS[0]) + "\n\n" + json.dumps(CORPUS[1]) + "\n", QUERIES[:2],
                    "query-id\tcorpus-id\tscore\nq1\td1\t1\n\n")
    data = load_beir(str(folder))
    assert list(data.corpus) == ["d1", "d2"] and data.qrels == {"q1": {"d1": 1}}


def test_error_folder_missing(tmp_path):
    with pytest.raises(BeirError, match="folder .* missing"):
        load_beir(tmp_path / "nope")


@pytest.mark.parametrize(
    "present,missing",
    [
        ({"queries": QUERIES, "qrels": QRELS}, "corpus.jsonl missing"),
        ({"corpus": CORPUS, "qrels": QRELS}, "queries.jsonl missing"),
        ({"corpus": CORPUS, "queries": QUERIES}, "qrels/test.tsv missing"),
    ],
)
def test_error_file_missing(tmp_path, present, missing):
    with pytest.raises(BeirError, match=missing):
        load_beir(_write(tmp_path / "ds", **present))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"corpus": json.dumps(CORPUS[0]) + "\n{not json\n"}, r"corpus.jsonl line 2: malformed JSON"),
        ({"corpus": '{"title": "t", "text": "x"}\n'}, r"corpus.jsonl line 1: missing field '_id'"),
        ({"corpus": '["d1", "x"]\n'}, r"corpus.jsonl line 1: expected a JSON object"),
        ({"corpus": CORPUS + [CORPUS[0]]}, r"corpus.jsonl line 4: duplicate _id 'd1'"),
        ({"queries": '{"_id": "q1", "text": 5}\n'}, r"queries.jsonl line 1: field 'text' must be a string"),
        ({"queries": '{"_id": "q1"\n'}, r"queries.jsonl line 1: malformed JSON"),
        ({"qrels": "q1\td1\t1\n"}, r"qrels/test.tsv line 1: expected header"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\tyes\n"}, r"qrels/test.tsv line 2: score 'yes' is not an integer"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\t1.5\n"}, r"line 2: score '1.5' is not an integer"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\n"}, r"line 2: expected 3 tab-separated fields, got 2"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\t1\nqX\td1\t1\n"}, r"line 3: query-id 'qX' not in queries.jsonl"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\tdX\t1\n"}, r"line 2: corpus-id 'dX' not in corpus.jsonl"),
        ({"qrels": "query-id\tcorpus-id\tscore\n"}, r"qrels/test.tsv: no judgements"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path, kwargs, message):
    files = {"corpus": CORPUS, "queries": QUERIES, "qrels": QRELS, **kwargs}
    with pytest.raises(BeirError, match=message) as info:
        load_beir(_write(tmp_path / "ds", **files))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ retrieval


def test_retrieve_orders_by_cosine_then_doc_id():
    q = np.array([[1.0, 0.0]])
    docs = np.array([
        [0.0, 1.0],  # "a": cos 0
        [2.0, 0.0],  # "z": cos 1
        [1.0, 1.0],  # "m": cos .707
        [1.0, -1.0],  # "c": cos .707, ties with "m" -> "c" first
        [NAN, 1.0],  # "b": unusable, never retrieved
    ])
    run = retrieve(q, ["q1"], docs, ["a", "z", "m", "c", "b"], k=3)
    assert list(run["q1"]) == ["z", "c", "m"]
    assert run["q1"]["z"] == pytest.approx(1.0) and run["q1"]["m"] == pytest.approx(1 / math.sqrt(2))
    # the tie sits exactly at the cut-off for k=2: the lower id wins
    assert list(retrieve(q, ["q1"], docs, ["a", "z", "m", "c", "b"], k=2)["q1"]) == ["z", "c"]
    # k larger than the usable corpus returns every usable document
    assert list(retrieve(q, ["q1"], docs, ["a", "z", "m", "c", "b"], k=10)["q1"]) == ["z", "c", "m", "a"]


def test_retrieve_unusable_query_gets_empty_result():
    run = retrieve(np.array([[NAN, 0.0], [0.0, 0.0], [1.0, 0.0]]), ["q1", "q2", "q3"], np.eye(2), ["d1", "d2"], k=1)
    assert run == {"q1": {}, "q2": {}, "q3": {"d1": pytest.approx(1.0)}}


def test_retrieve_matches_brute_force_on_random_data():
    rng = np.random.default_rng(4)
    qv, dv = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    qids, dids = [f"q{i}" for i in range(300)], [f"d{i:02d}" for i in range(50)]
    run = retrieve(qv, qids, dv, dids, k=5)
    for qi in (0, 137, 299):
        cos = [float(qv[qi] @ d / (np.linalg.norm(qv[qi]) * np.linalg.norm(d))) for d in dv]
        expected = sorted(range(50), key=lambda j: (-cos[j], dids[j]))[:5]
        assert list(run[qids[qi]]) == [dids[j] for j in expected]
        assert list(run[qids[qi]].values()) == pytest.approx([cos[j] for j in expected])


def test_retrieve_input_errors():
    with pytest.raises(ValueError):
        retrieve(np.eye(2), ["q", "q"], np.eye(2), ["a", "b"], k=1)
    with pytest.raises(ValueError):
        retrieve(np.eye(2), ["q1", "q2"], np.eye(3), ["a", "b", "c"], k=1)
    with pytest.raises(ValueError):
        retrieve(np.eye(2), ["q1", "q2"], np.eye(2), ["a", "b"], k=0)


# ------------------------------------------------------------------ metrics by hand

QRELS_FIX = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d5": 1},
    "q2": {"d4": 1},
    "q3": {"d2": 0},  # no relevant document -> skipped
    "q4": {"d1": 1},  # relevant documents but absent from the run -> scores 0
}
RUN_FIX = {
    "q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6, "d5": 0.1},
    "q2": {"d4": 0.5, "d1": 0.5, "d2": 0.2},  # tie: d1 ranks before d4 (id ascending)
    "q3": {"d2": 0.3},
    "q9": {"d1": 1.0},  # not in qrels: ignored
}
LOG2_3 = math.log2(3)


def test_ndcg_at_3_hand_computed():
    # q1 top-3: d3 (rel 0), d1 (rel 2), d4 (unjudged, 0)
    #   DCG  = 0/log2(2) + 2/log2(3) + 0/log2(4) = 1.261860
    #   IDCG = gains sorted [2, 1, 1] -> 2/1 + 1/log2(3) + 1/2 = 3.130930
    #   nDCG = 1.261860 / 3.130930 = 0.403030
    # q2 top-3: d1 (0), d4 (1), d2 (0) -> DCG = 1/log2(3) = 0.630930; IDCG = 1 -> 0.630930
    # q4: missing from run -> 0;  q3: skipped;  mean = (0.403030 + 0.630930 + 0) / 3 = 0.344653
    result = ndcg_at_k(RUN_FIX, QRELS_FIX, k=3)
    q1 = (2 / LOG2_3) / (2 + 1 / LOG2_3 + 0.5)
    q2 = 1 / LOG2_3
    assert result.per_query == {"q1": pytest.approx(q1), "q2": pytest.approx(q2), "q4": 0.0}
    assert q1 == pytest.approx(0.403030, abs=1e-6)
    assert result.mean == pytest.approx((q1 + q2) / 3)
    assert result.mean == pytest.approx(0.344653, abs=1e-6)
    assert result.skipped_no_relevant == ("q3",)
    assert result.missing_from_run == ("q4",)
    assert (result.name, result.k, result.n_queries) == ("ndcg", 3, 3)


def test_recall_at_3_hand_computed():
    # q1: relevant {d1, d2, d5}; top-3 {d3, d1, d4} -> 1/3
    # q2: relevant {d4}; top-3 {d1, d4, d2} -> 1
    # q4: 0;  mean = (1/3 + 1 + 0) / 3 = 0.444444
    result = recall_at_k(RUN_FIX, QRELS_FIX, k=3)
    assert result.per_query == {"q1": pytest.approx(1 / 3), "q2": 1.0, "q4": 0.0}
    assert result.mean == pytest.approx(4 / 9)


def test_tie_break_changes_rank_one():
    # k=1, q2: d4 and d1 tie at 0.5 -> d1 (id ascending) is rank 1 and is not relevant
    assert ndcg_at_k(RUN_FIX, QRELS_FIX, k=1).per_query["q2"] == 0.0
    assert recall_at_k(RUN_FIX, QRELS_FIX, k=1).per_query["q2"] == 0.0


def test_ndcg_perfect_and_ideal_cut_at_k():
    # one relevant doc at rank 1 of many relevant: ideal DCG is cut at k as well
    qrels = {"q": {"a": 1, "b": 1, "c": 1}}
    run = {"q": {"a": 3.0, "b": 2.0, "x": 1.0}}
    # k=2: DCG = 1 + 1/log2(3) = IDCG -> 1.0 ; k=3: DCG 1 + 1/log2(3), IDCG adds 1/2
    assert ndcg_at_k(run, qrels, k=2).per_query["q"] == pytest.approx(1.0)
    assert ndcg_at_k(run, qrels, k=3).per_query["q"] == pytest.approx((1 + 1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5))


def test_identical_ids_ignored_by_default():
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 0.99, "d1": 0.5}}
    assert ndcg_at_k(run, qrels, k=1).mean == 1.0
    assert ndcg_at_k(run, qrels, k=1, ignore_identical_ids=False).mean == 0.0


def test_no_evaluable_query_gives_none():
    r = ndcg_at_k({"q": {"d": 1.0}}, {"q": {"d": 0}}, k=10)
    assert r.mean is None and r.per_query == {} and r.skipped_no_relevant == ("q",)


# ------------------------------------------------------------------ cross-check against trec_eval


def test_cross_check_with_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(8)
    qv, dv = rng.normal(size=(40, 16)), rng.normal(size=(200, 16))
    qids, dids = [f"q{i}" for i in range(40)], [f"doc{i}" for i in range(200)]
    qrels = {}
    for qid in qids:
        judged = rng.choice(200, size=rng.integers(1, 12), replace=False)
        qrels[qid] = {dids[j]: int(rng.integers(0, 3)) for j in judged}
        qrels[qid][dids[int(judged[0])]] = int(rng.integers(1, 3))  # at least one relevant
    run = retrieve(qv, qids, dv, dids, k=100)  # random floats: no exact ties
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,5,10", "recall.1,5,10"})
    ref = evaluator.evaluate(run)
    for k in (1, 5, 10):
        ours_ndcg = ndcg_at_k(run, qrels, k=k)
        ours_recall = recall_at_k(run, qrels, k=k)
        for qid in qids:
            assert ours_ndcg.per_query[qid] == pytest.approx(ref[qid][f"ndcg_cut_{k}"], abs=1e-9)
            assert ours_recall.per_query[qid] == pytest.approx(ref[qid][f"recall_{k}"], abs=1e-9)
        beir_mean = sum(ref[qid][f"ndcg_cut_{k}"] for qid in ref) / len(ref)  # BEIR's averaging
        assert ours_ndcg.mean == pytest.approx(beir_mean, abs=1e-9)
    assert any(v["ndcg_cut_10"] not in (0.0, 1.0) for v in ref.values())  # graded gains exercised


def test_pytrec_eval_tie_order_is_doc_id_descending():
    """Documents the one known divergence: trec_eval breaks exact ties by doc id descending."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.5, "b": 0.5}}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1"}).evaluate(run)
    assert ref["q"]["ndcg_cut_1"] == 0.0  # trec_eval put "b" first
    assert ndcg_at_k(run, qrels, k=1).per_query["q"] == 1.0  # we put "a" first (ascending)
