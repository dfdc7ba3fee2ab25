"""The TD-073 workload: short (~50 tokens), long (~500) and document (~2000) texts.

Texts are made offline and deterministically from a seed: phrase banks of RAG-like content
(technical documentation, support tickets, meeting notes, incident reports, policies and FAQs;
bench/data/phrase_bank.json) in German, English, French, Spanish, Chinese and Japanese, with a
few emoji. Each text is grown part by part (sentence, heading) until its length under the
model's OWN tokenizer is within +/-10 % of the set's target, so "about 50 tokens" is measured,
not assumed: every candidate part is tokenised once (in batches, counts cached) and summed, and
the finished text is tokenised once more to verify the count that is recorded.

User texts (`--texts FILE`) come in through `read_texts_file` and become one set, "user".

Pure Python; nothing heavy is imported here. The tokenizer is any Hugging Face tokenizer
(callable with `add_special_tokens`, `truncation`, `verbose`, returning "input_ids").
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import DATA_DIR

GENERATOR_VERSION = "td073-workload/2"
TOLERANCE = 0.10  # each generated text lies within target * (1 +/- TOLERANCE) tokens
# Ollama >= 0.30 cuts every embedding input at its num_batch, 2048 tokens by default
# (field_knowledge.json "cut-at-num-batch"). Generated texts stay below it, BOS/EOS and a
# tokenizer difference or two included, so both sides embed the same tokens and the documents
# ratio compares equal work; a --texts file of longer texts shows the cut as a finding.
TOKEN_CEILING = 2040

TARGET_TOKENS: dict[str, int] = {"short": 50, "long": 500, "documents": 2000}

# Language of text i is LANGUAGE_DECK[i % 20]: 45 % de, 30 % en, 10 % fr, 5 % es, 5 % zh, 5 % ja.
# A fixed deck (not a draw) so that even a 4-text smoke set holds German and English.
LANGUAGE_DECK: tuple[str, ...] = (
    "de", "en", "de", "fr", "en", "de", "es", "en", "de", "zh",
    "de", "en", "ja", "de", "en", "fr", "de", "en", "de", "de",
)  # fmt: skip
UNDETERMINED = "und"  # ISO 639-2 code for user texts of unknown language


class WorkloadError(Exception):
    """The workload cannot be built or read; the message is one line saying why and where."""


@dataclass(frozen=True)
class TextSet:
    name: str
    texts: tuple[str, ...]
    token_counts: tuple[int, ...]  # measured with the workload's tokenizer, special tokens included
    target_tokens: int | None  # None for user texts
    languages: tuple[str, ...]  # one ISO 639-1 code per text ("und" when unknown)
    source: str


@dataclass(frozen=True)
class Workload:
    sets: tuple[TextSet, ...]
    seed: int | None
    tokenizer_name: str
    generator_version: str

    def get(self, name: str) -> TextSet:
        for text_set in self.sets:
            if text_set.name == name:
                return text_set
        raise WorkloadError(f"no text set {name!r} in this workload (has: {', '.join(s.name for s in self.sets)}).")


@dataclass(frozen=True)
class LoadedTexts:
    """What `read_texts_file` found: the texts and how the file was read."""

    path: str
    format: str  # "jsonl", "json-array" or "plain"
    texts: tuple[str, ...]
    blank_lines_skipped: int
    where: tuple[str, ...] = ()  # per text, where it is in the file: "3" (line) or "item 2" (JSON array)


# --------------------------------------------------------------------------- phrase banks


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples the generator deals from (immutable, as before)."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return tuple(value) if isinstance(value, list) else value


# Phrases are data (bench/data/phrase_bank.json); how they are dealt and filled is code, below.
# Templates hold {slot} placeholders: see _SLOT_VALUES / _SLOT_MAKERS / _LOCAL_SLOTS.
_BANK = _tuples(json.loads((DATA_DIR / "phrase_bank.json").read_text(encoding="utf-8")))
SENTENCES: dict[str, dict[str, tuple[str, ...]]] = _BANK["sentences"]
FRAGMENTS: dict[str, tuple[str, ...]] = _BANK["fragments"]  # close the last gap without overshooting
HEADINGS: dict[str, tuple[str, ...]] = _BANK["headings"]
TITLES: dict[str, tuple[str, ...]] = _BANK["titles"]
EMOJI: tuple[str, ...] = _BANK["emoji"]
_SLOT_VALUES: dict[str, tuple[str, ...]] = _BANK["slot_values"]
_LOCAL_SLOTS: dict[str, dict[str, tuple[str, ...]]] = _BANK["local_slots"]
EMOJI_DOMAINS = frozenset({"support", "meeting"})
EMOJI_SHARE = 0.15

_SLOT_MAKERS = {
    "n": lambda r: str(r.randint(2, 500)),
    "days": lambda r: str(r.randint(2, 30)),
    "pct": lambda r: str(r.randint(2, 98)),
    "ms": lambda r: str(r.randint(8, 1800)),
    "min": lambda r: str(r.randint(2, 45)),
    "s": lambda r: str(r.randint(5, 120)),
    "ver": lambda r: f"{r.randint(1, 9)}.{r.randint(0, 24)}.{r.randint(0, 9)}",
    "ticket": lambda r: f"SUP-{r.randint(1000, 9999)}",
    "host": lambda r: f"gpu-node-{r.randint(1, 48):02d}",
    "date": lambda r: f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
}

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, language: str, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot in _SLOT_MAKERS:
            return _SLOT_MAKERS[slot](rng)
        local = _LOCAL_SLOTS.get(language, {}).get(slot)
        return rng.choice(local if local is not None else _SLOT_VALUES[slot])

    return _SLOT.sub(value, template)


# --------------------------------------------------------------------------- token counting


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token counts as the model sees them: special tokens included, no truncation."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


class _PartCounter:
    """Counts parts without special tokens, in batches, each distinct string once."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[str, int] = {}
        self.special = count_tokens(tokenizer, [""])[0]  # [CLS]/[SEP], <s>/</s>...

    def counts(self, parts: Sequence[str]) -> list[int]:
        missing = [p for p in dict.fromkeys(parts) if p not in self._cache]
        if missing:
            encoded = self._tokenizer(missing, add_special_tokens=False, truncation=False, verbose=False)
            self._cache.update(zip(missing, (len(ids) for ids in encoded["input_ids"])))
        return [self._cache[p] for p in parts]


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Part:
    text: str
    separator: str  # joins this part to the previous one
    heading: bool = False


def _part_stream(set_name: str, language: str, rng: random.Random) -> Iterator[_Part]:
    """Endless candidate parts for one text: one domain per short/long text, sections for documents."""
    bank = SENTENCES[language]
    domains = sorted(bank)
    decks: dict[str, list[str]] = {}

    def sentence(domain: str) -> str:
        # Deal templates from a shuffled deck: no template repeats before the domain's bank is used up.
        deck = decks.get(domain)
        if not deck:
            deck = decks[domain] = rng.sample(bank[domain], len(bank[domain]))
        text = _fill(deck.pop(), language, rng)
        if domain in EMOJI_DOMAINS and rng.random() < EMOJI_SHARE:
            text = f"{text} {rng.choice(EMOJI)}"
        return text

    if set_name == "documents":
        yield _Part("# " + _fill(rng.choice(TITLES[language]), language, rng), "", heading=True)
        while True:
            domain = rng.choice(domains)
            yield _Part("## " + rng.choice(HEADINGS[language]), "\n\n", heading=True)
            for paragraph in range(rng.randint(2, 4)):
                for index in range(rng.randint(3, 6)):
                    yield _Part(sentence(domain), "\n\n" if index == 0 else " ")
    else:
        domain = rng.choice(domains)
        sentences_per_paragraph = 10**9 if set_name == "short" else rng.randint(4, 7)
        count = 0
        while True:
            separator = "" if count == 0 else ("\n\n" if count % sentences_per_paragraph == 0 else " ")
            yield _Part(sentence(domain), separator)
            count += 1


def _join(parts: Sequence[_Part]) -> str:
    return "".join((p.separator if i else "") + p.text for i, p in enumerate(parts))


def _compose(
    set_name: str,
    target: int,
    language: str,
    rng: random.Random,
    counter: _PartCounter,
) -> tuple[str, int]:
    """One text within target*(1 +/- TOLERANCE) tokens; returns the text and its measured count."""
    low, high = token_window(target)
    goal = min(round(target * rng.uniform(0.95, 1.05)), high)  # per-text spread; the mean stays near target
    stream = _part_stream(set_name, language, rng)
    chunk = max(4, min(64, target // 15))
    pending: list[tuple[_Part, int]] = []
    parts: list[_Part] = []
    costs: list[int] = []
    total = counter.special
    fragments = list(FRAGMENTS[language])
    backtracks = 4

    def fetch() -> None:
        new = [next(stream) for _ in range(chunk)]
        pending.extend(zip(new, counter.counts([p.text for p in new])))

    while total < goal:
        chosen = None
        for _ in range(16):  # a few candidates; skip those that would overshoot the window
            if not pending:
                fetch()
            part, cost = pending.pop(0)
            room = high - total
            if cost <= room and not (part.heading and room < 120 and parts):
                chosen = (part, cost)
                break
        keep = 1 if parts and parts[0].heading else 0  # never take back a document's title
        if chosen is None and total < low and backtracks and len(parts) > keep:
            backtracks -= 1  # nothing fits the remaining room: take the last part back, try others
            parts.pop()
            total -= costs.pop()
            continue
        if chosen is None:
            rng.shuffle(fragments)
            fitting = [(f, c) for f, c in zip(fragments, counter.counts(fragments)) if total + c <= high]
            if not fitting:
                break
            chosen = (_Part(fitting[0][0], " "), fitting[0][1])
        part, cost = chosen
        if total >= low and (total + cost - goal) > (goal - total):
            break  # stopping here is closer to the goal than adding this part
        parts.append(part)
        costs.append(cost)
        total += cost

    # Verify with one tokenisation of the whole text; summed part counts can drift at joins.
    for _ in range(12):
        text = _join(parts)
        measured = count_tokens(counter._tokenizer, [text])[0]
        if low <= measured <= high and not parts[-1].heading:
            return text, measured
        if measured > high or parts[-1].heading:
            if len(parts) == 1:
                break
            parts.pop()
        else:
            rng.shuffle(fragments)
            gap = high - measured
            fitting = [f for f, c in zip(fragments, counter.counts(fragments)) if c <= gap]
            if not fitting:
                break
            parts.append(_Part(fitting[0], " "))
    raise WorkloadError(
        f"could not compose a {set_name} text of {target} tokens +/-{TOLERANCE:.0%} ({language}) "
        f"with this tokenizer; last attempt measured {measured} tokens."
    )


def token_window(target: int) -> tuple[int, int]:
    """The accepted token counts for a target: [ceil(target*0.9), min(floor(target*1.1), TOKEN_CEILING)]."""
    return (math.ceil(round(target * (1 - TOLERANCE), 6)),
            min(math.floor(round(target * (1 + TOLERANCE), 6)), TOKEN_CEILING))


def _rng(seed: int, set_name: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512 by random.Random: stable across processes and
    # independent of PYTHONHASHSEED. Per text, so text i is the same whatever the set size.
    return random.Random(f"{GENERATOR_VERSION}:{seed}:{set_name}:{index}")


def build_text_set(tokenizer: Any, set_name: str, size: int, seed: int, counter: _PartCounter | None = None) -> TextSet:
    if set_name not in TARGET_TOKENS:
        raise WorkloadError(f"unknown text set {set_name!r}; known: {', '.join(TARGET_TOKENS)}.")
    if size < 0:
        raise WorkloadError(f"text set {set_name!r}: size must be >= 0, got {size}.")
    counter = counter or _PartCounter(tokenizer)
    target = TARGET_TOKENS[set_name]
    texts: list[str] = []
    counts: list[int] = []
    languages: list[str] = []
    seen: set[str] = set()
    for index in range(size):
        language = LANGUAGE_DECK[index % len(LANGUAGE_DECK)]
        rng = _rng(seed, set_name, index)
        text, measured = _compose(set_name, target, language, rng, counter)
        for _ in range(8):  # duplicates would flatter any cache; draw again from the same rng
            if text not in seen:
                break
            text, measured = _compose(set_name, target, language, rng, counter)
        seen.add(text)
        texts.append(text)
        counts.append(measured)
        languages.append(language)
    return TextSet(
        name=set_name,
        texts=tuple(texts),
        token_counts=tuple(counts),
        target_tokens=target,
        languages=tuple(languages),
        source=(
            f"generated offline by {GENERATOR_VERSION} (seed {seed}) from embedded phrase banks "
            f"(docs, support tickets, meeting notes, incident reports, policies); each text within "
            f"{target} tokens +/-{TOLERANCE:.0%} under the model's tokenizer"
        ),
    )


def build_workload(tokenizer: Any, sizes: Mapping[str, int], seed: int) -> Workload:
    """The generated workload: one TextSet per entry of `sizes` (sizes come from bench.config.PROFILES)."""
    unknown = [name for name in sizes if name not in TARGET_TOKENS]
    if unknown:
        raise WorkloadError(f"unknown text set(s) {', '.join(map(repr, unknown))}; known: {', '.join(TARGET_TOKENS)}.")
    counter = _PartCounter(tokenizer)
    sets = tuple(build_text_set(tokenizer, name, int(size), seed, counter) for name, size in sizes.items())
    return Workload(sets=sets, seed=seed, tokenizer_name=tokenizer_name(tokenizer), generator_version=GENERATOR_VERSION)


def build_user_workload(tokenizer: Any, loaded: LoadedTexts) -> Workload:
    """User texts as one set, "user", with measured token counts and unknown language.

    A text the tokenizer turns into nothing but special tokens (only control characters or
    invisible ones such as U+200B) is rejected naming its line, like an empty one: its
    "embedding" would be the empty string's, under a text that claims otherwise.
    """
    counts = count_tokens(tokenizer, loaded.texts)
    empty = count_tokens(tokenizer, [""])[0]  # special tokens only
    for index, (text, count) in enumerate(zip(loaded.texts, counts)):
        if count <= empty:
            where = loaded.where[index] if index < len(loaded.where) else f"text {index + 1}"
            raise WorkloadError(
                f"{loaded.path}:{where}: no token to embed in {_preview(text)} (only control or invisible "
                "characters); remove the text or give it content."
            )
    skipped = f", {loaded.blank_lines_skipped} blank lines skipped" if loaded.blank_lines_skipped else ""
    text_set = TextSet(
        name="user",
        texts=loaded.texts,
        token_counts=tuple(counts),
        target_tokens=None,
        languages=(UNDETERMINED,) * len(loaded.texts),
        source=f"user file {loaded.path} ({loaded.format}, {len(loaded.texts)} texts{skipped})",
    )
    return Workload(sets=(text_set,), seed=None, tokenizer_name=tokenizer_name(tokenizer), generator_version="user")


def _preview(text: str, limit: int = 24) -> str:
    shown = ascii(text[:limit])
    return shown if len(text) <= limit else f"{shown[:-1]}...{shown[-1]} ({len(text)} characters)"


def tokenizer_name(tokenizer: Any) -> str:
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{name} ({type(tokenizer).__name__})" if name else type(tokenizer).__name__


# --------------------------------------------------------------------------- user texts file

JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


def read_texts_file(path: str | Path) -> LoadedTexts:
    """Read `--texts FILE`.

    Format: JSONL when the suffix is .jsonl/.ndjson/.json (a .json file starting with "[" is
    read as one JSON array) or when the first non-blank line parses as a JSON string or
    object; otherwise plain text, one text per line.
    JSONL lines are a JSON string or an object with a string "text" field.
    Blank (empty or whitespace-only) lines are separators, not texts, in both formats: they
    are skipped, and in plain files counted in `blank_lines_skipped` (bench.json's workload
    source and the run's first note say how many). A JSON text that is empty or whitespace
    only is an error naming its line: an empty string cannot be embedded meaningfully.
    `where` keeps each text's line (or array item), so later errors and indices map back.
    Invalid UTF-8 (UTF-16 included), lone surrogates (also as JSON \\ud800 escapes) and
    malformed JSON are errors naming the line. Raises WorkloadError with a one-line message.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WorkloadError(f"{path}: texts file not found.") from None
    except IsADirectoryError:
        raise WorkloadError(f"{path}: is a directory, not a texts file.") from None
    except OSError as err:
        raise WorkloadError(f"{path}: cannot be read ({err.strerror or err}).") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise WorkloadError(f"{path}: UTF-16 text (byte-order mark); save it as UTF-8.")
    lines = _decode_lines(path, data)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise WorkloadError(f"{path}: no texts (the file is empty or blank).")
    suffix = path.suffix.lower()
    if suffix == ".json" and first.lstrip().startswith("["):
        texts = _parse_json_array(path, "\n".join(lines))
        return LoadedTexts(str(path), "json-array", texts, 0, tuple(f"item {i}" for i in range(len(texts))))
    if suffix in JSON_SUFFIXES or _looks_like_jsonl(first):
        numbered = _parse_jsonl(path, lines)
        return LoadedTexts(str(path), "jsonl", tuple(t for _, t in numbered), 0, tuple(str(n) for n, _ in numbered))
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    return LoadedTexts(str(path), "plain", tuple(t for _, t in numbered),
                       len(lines) - len(numbered) - _trailing_empty(lines), tuple(str(n) for n, _ in numbered))


def load_texts_file(path: str | Path) -> list[str]:
    """The texts of `--texts FILE` (see read_texts_file for formats and errors)."""
    return list(read_texts_file(path).texts)


def _decode_lines(path: Path, data: bytes) -> list[str]:
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")  # strict: also rejects UTF-8-encoded surrogates
        except UnicodeDecodeError as err:
            raise WorkloadError(
                f"{path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})."
            ) from None
        lines.append(line.removesuffix("\r"))
    return lines


def _trailing_empty(lines: list[str]) -> int:
    """The empty string after a final newline is not a blank line of the file."""
    return 1 if lines and lines[-1] == "" else 0


def _looks_like_jsonl(first: str) -> bool:
    stripped = first.strip()
    if not stripped.startswith(("{", '"')):
        return False
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return False
    return isinstance(value, (dict, str))


def _text_of(path: Path, where: str, value: Any) -> str:
    if isinstance(value, dict):
        if "text" not in value:
            raise WorkloadError(f"{path}:{where}: JSON object has no \"text\" field.")
        value = value["text"]
    if not isinstance(value, str):
        raise WorkloadError(f"{path}:{where}: expected a string or an object with a string \"text\", got {type(value).__name__}.")
    if not value.strip():
        raise WorkloadError(f"{path}:{where}: empty text (an empty string cannot be embedded meaningfully).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise WorkloadError(f"{path}:{where}: text holds a lone surrogate (U+{ord(value[err.start]):04X}).") from None
    return value


def _parse_jsonl(path: Path, lines: list[str]) -> list[tuple[int, str]]:
    """(line number, text) per non-blank line."""
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise WorkloadError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}).") from None
        texts.append((number, _text_of(path, str(number), value)))
    return texts


def _parse_json_array(path: Path, document: str) -> tuple[str, ...]:
    try:
        values = json.loads(document)
    except json.JSONDecodeError as err:
        raise WorkloadError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno}).") from None
    if not isinstance(values, list) or not values:
        raise WorkloadError(f"{path}: expected a non-empty JSON array of texts.")
    return tuple(_text_of(path, f"item {index}", value) for index, value in enumerate(values))


# --------------------------------------------------------------------------- results


def _summary(text_set: TextSet) -> dict[str, Any]:
    counts = text_set.token_counts
    return {
        "count": len(counts),
        "tokens_min": min(counts) if counts else None,
        "tokens_mean": sum(counts) / len(counts) if counts else None,
        "tokens_max": max(counts) if counts else None,
        "tokens_total": sum(counts),
        "languages": dict(sorted(Counter(text_set.languages).items())),
    }


def workload_to_dict(workload: Workload, include_texts: bool = True) -> dict[str, Any]:
    """Plain JSON-ready description of the workload (with the texts themselves unless asked not to)."""
    sets = []
    for text_set in workload.sets:
        entry: dict[str, Any] = {
            "name": text_set.name,
            "target_tokens": text_set.target_tokens,
            "tolerance": TOLERANCE if text_set.target_tokens is not None else None,
            "source": text_set.source,
            **_summary(text_set),
        }
        if include_texts:
            entry["texts"] = [
                {"text": t, "tokens": n, "language": lang}
                for t, n, lang in zip(text_set.texts, text_set.token_counts, text_set.languages)
            ]
        sets.append(entry)
    return {
        "generator_version": workload.generator_version,
        "seed": workload.seed,
        "tokenizer": workload.tokenizer_name,
        "sets": sets,
    }


def workload_from_dict(data: Mapping[str, Any]) -> Workload:
    """Inverse of workload_to_dict(include_texts=True), e.g. to re-run a saved workload."""
    try:
        sets = tuple(
            TextSet(
                name=entry["name"],
                texts=tuple(item["text"] for item in entry["texts"]),
                token_counts=tuple(int(item["tokens"]) for item in entry["texts"]),
                target_tokens=entry["target_tokens"],
                languages=tuple(item["language"] for item in entry["texts"]),
                source=entry["source"],
            )
            for entry in data["sets"]
        )
        return Workload(
            sets=sets,
            seed=data["seed"],
            tokenizer_name=data["tokenizer"],
            generator_version=data["generator_version"],
        )
    except (KeyError, TypeError) as err:
        raise WorkloadError(f"saved workload is incomplete ({type(err).__name__}: {err}); was it saved with texts?") from None


def save_workload(workload: Workload, path: str | Path, include_texts: bool = True) -> None:
    """Write the workload as JSON next to the results (atomic, via probe.output)."""
    from probe.output import write_json_atomic

    write_json_atomic(Path(path), workload_to_dict(workload, include_texts=include_texts))


def load_tokenizer(model: str) -> Any:
    """The native model's own tokenizer (hub name or local folder), or a WorkloadError saying why not."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - hub, file and format errors all end the same way
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WorkloadError(
            f"cannot load the tokenizer of {model!r} ({first_line}); download the model into the "
            "Hugging Face cache first (hf download MODEL) or pass a local folder."
        ) from None


def prepare_workload(model: str, profile: Any, texts_file: str | Path | None) -> Workload:
    """The run's workload: the user's --texts file, else the profile's generated sets."""
    tokenizer = load_tokenizer(model)
    if texts_file is not None:
        return build_user_workload(tokenizer, read_texts_file(texts_file))
    return build_workload(tokenizer, profile.set_sizes, profile.seed)
