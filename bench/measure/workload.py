"""The TD-073 workload: short (~50 tokens), long (~500) and document (~2000) texts.

Texts are made offline and deterministically from a seed: embedded phrase banks of RAG-like
content (technical documentation, support tickets, meeting notes, incident reports, policies
and FAQs) in German, English, French, Spanish, Chinese and Japanese, with a few emoji. Each text
is grown part by part (sentence, heading) until its length under the model's OWN tokenizer is
within +/-10 % of the set's target, so "about 50 tokens" is measured, not assumed: every
candidate part is tokenised once (in batches, counts cached) and summed, and the finished text
is tokenised once more to verify the count that is recorded.

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

GENERATOR_VERSION = "td073-workload/1"
TOLERANCE = 0.10  # each generated text lies within target * (1 +/- TOLERANCE) tokens

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

# {slot} placeholders; see _SLOT_VALUES / _SLOT_MAKERS / _LOCAL_SLOTS below.
SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "docs": (
            "Der Dienst {service} liest seine Konfiguration beim Start aus {path} und übernimmt spätere Änderungen erst nach einem Neustart.",
            "Ab Version {ver} unterstützt {component} Batch-Anfragen mit bis zu {n} Einträgen pro Aufruf.",
            "Für den Produktivbetrieb empfehlen wir mindestens {gb} GB Arbeitsspeicher und eine eigene GPU.",
            "Die Umgebungsvariable {envvar} legt fest, welcher Embedding-Endpunkt verwendet wird.",
            "Während der Index neu aufgebaut wird, bleibt die alte Version lesbar, bis der Wechsel abgeschlossen ist.",
            "Alle Zeitangaben in den Logs sind in UTC; die Oberfläche rechnet sie in die lokale Zeitzone um.",
            "Die Antwortzeit des Endpunkts {endpoint} liegt im Median bei {ms} ms, im 95. Perzentil etwa beim Dreifachen.",
            "Dokumente werden vor dem Einbetten in Abschnitte von höchstens {n} Tokens zerlegt, mit zehn Prozent Überlappung.",
            "Bei einem Fehler wiederholt der Client die Anfrage bis zu dreimal mit wachsender Wartezeit.",
            "Die Vektoren haben {dim} Dimensionen und werden vor dem Speichern auf Länge eins normiert.",
            "Zugriffe auf {endpoint} erfordern ein gültiges Token, das alle {min} Minuten erneuert wird.",
            "Im Abschnitt Fehlerbehebung ist beschrieben, wie man einen hängenden Import-Job sicher abbricht.",
            "Der Standardwert ist {batch}.",
            "Siehe auch Kapitel {n}.",
            "Die Option ist ab {ver} veraltet.",
        ),
        "support": (
            "Seit dem Update auf {ver} erhalten wir beim Hochladen von PDF-Dateien den Fehler {error}.",
            "Kundin {name} meldet, dass die Suche nach Rechnungsnummern keine Treffer mehr liefert.",
            "Der Export nach Excel bricht nach etwa {n} Zeilen ohne Fehlermeldung ab.",
            "Bitte prüfen, ob das Problem auch im Testsystem auftritt, bevor wir das Ticket eskalieren.",
            "Das Zurücksetzen des Passworts funktioniert, aber die Bestätigungsmail kommt erst nach {min} Minuten an.",
            "Ticket {ticket} wurde an das Team {team} weitergeleitet, Priorität hoch.",
            "Der Nutzer hat den Browser-Cache geleert und sich neu angemeldet, leider ohne Erfolg.",
            "Als Workaround kann die Datei vorerst in kleineren Teilen hochgeladen werden.",
            "Laut Log schlägt die Verbindung zu {service} nach {s} Sekunden mit einem Timeout fehl.",
            "Können Sie uns bitte einen Screenshot und die genaue Uhrzeit des Fehlers schicken?",
            "Die Antworten des Chatbots enthalten manchmal Quellen, die gar nicht zum Thema passen.",
            "Tritt seit heute früh auf.",
            "Betrifft nur Firefox.",
            "Ist das bekannt?",
        ),
        "meeting": (
            "Teilnehmende: {name}, {name} und {name}; Protokoll: {name}.",
            "{name} stellt die Benchmark-Ergebnisse vor: Der neue Ansatz ist etwa {pct} Prozent schneller.",
            "Beschluss: Die Migration auf {component} wird auf den {date} verschoben.",
            "Offener Punkt: Wer übernimmt die Dokumentation der neuen Schnittstelle?",
            "Das Team einigt sich darauf, die Sprint-Ziele auf drei Themen zu begrenzen.",
            "{name} klärt bis nächste Woche, ob die Lizenzkosten im Budget enthalten sind.",
            "Die Retrospektive ergab, dass Code-Reviews zu lange liegen bleiben.",
            "Nächster Termin: {weekday}, {date}, 10:00 Uhr im Raum {room}.",
            "{name} weist darauf hin, dass die Testdaten keine echten Kundendaten enthalten dürfen.",
            "Aktion: {name} legt ein Ticket für die fehlenden Metriken im Dashboard an.",
            "Keine Einwände.",
            "{name} übernimmt.",
            "Vertagt.",
        ),
        "ops": (
            "Um {time} Uhr stieg die Fehlerquote von {service} auf {pct} Prozent.",
            "Ursache war ein voll gelaufenes Dateisystem auf dem Knoten {host}.",
            "Nach dem Neustart des Pods normalisierten sich die Latenzen innerhalb von {min} Minuten.",
            "Die GPU-Auslastung lag während des Reindexings dauerhaft über {pct} Prozent.",
            "Das Monitoring hat den Ausfall erst nach {min} Minuten gemeldet; der Schwellwert wird angepasst.",
            "Betroffen waren ausschließlich Anfragen mit Dokumenten über {n} Seiten.",
            "Als Sofortmaßnahme wurde die Batch-Größe von {batch} auf {batch} reduziert.",
            "Die Postmortem-Analyse liegt im Wiki unter {path}.",
            "Der Speicherverbrauch von {service} wuchs über Nacht langsam auf {gb} GB an.",
            "Ein Rollback auf Version {ver} hat das Problem vorerst behoben.",
            "Dauer der Störung: {min} Minuten.",
            "Status: behoben.",
            "Alarm ausgelöst um {time} Uhr.",
        ),
        "policy": (
            "Mitarbeitende können bis zu {n} Tage im Jahr mobil arbeiten, sofern das Team zustimmt.",
            "Reisekosten müssen innerhalb von dreißig Tagen nach Rückkehr über das Portal abgerechnet werden.",
            "Die Aufbewahrungsfrist für Buchungsbelege beträgt zehn Jahre.",
            "Personenbezogene Daten dürfen nur für den vereinbarten Zweck verarbeitet werden.",
            "Das Abonnement kann jederzeit zum Monatsende gekündigt werden.",
            "Im Tarif Business sind {n} Benutzerkonten und {gb} GB Speicher enthalten.",
            "Rückfragen zur Datenschutzerklärung richten Sie bitte an datenschutz@example.de.",
            "Neue Kolleginnen und Kollegen erhalten am ersten Tag Laptop, Zugangskarte und eine Patin oder einen Paten.",
            "Änderungen an produktiven Systemen brauchen eine Freigabe durch zwei Personen.",
            "Urlaubsanträge sollten mindestens {days} Tage im Voraus gestellt werden.",
            "Ausnahmen regelt die Teamleitung.",
            "Gilt ab dem {date}.",
            "Details im Intranet.",
        ),
    },
    "en": {
        "docs": (
            "The {service} service reads its configuration from {path} at startup and picks up later changes only after a restart.",
            "Starting with version {ver}, {component} accepts batch requests with up to {n} items per call.",
            "For production we recommend at least {gb} GB of RAM and a dedicated GPU.",
            "The {envvar} environment variable selects which embedding endpoint is used.",
            "While the index is being rebuilt, the previous version stays readable until the switch completes.",
            "All timestamps in the logs are UTC; the web interface converts them to local time.",
            "The {endpoint} endpoint answers in {ms} ms at the median and roughly three times that at p95.",
            "Documents are split into chunks of at most {n} tokens with a ten percent overlap before embedding.",
            "On failure the client retries the request up to three times with exponential backoff.",
            "Vectors have {dim} dimensions and are normalised to unit length before they are stored.",
            "Calls to {endpoint} need a valid token, which is refreshed every {min} minutes.",
            "The troubleshooting section explains how to cancel a stuck import job safely.",
            "The default is {batch}.",
            "See also chapter {n}.",
            "This option is deprecated since {ver}.",
        ),
        "support": (
            "Since the upgrade to {ver}, uploading PDF files fails with {error}.",
            "Customer {name} reports that searching for invoice numbers no longer returns any results.",
            "The Excel export stops after about {n} rows without an error message.",
            "Please check whether the issue also happens on staging before we escalate the ticket.",
            "The password reset works, but the confirmation email arrives only after {min} minutes.",
            "Ticket {ticket} was handed over to the {team} team with high priority.",
            "The user cleared the browser cache and signed in again, unfortunately without success.",
            "As a workaround, the file can be uploaded in smaller parts for now.",
            "According to the log, the connection to {service} times out after {s} seconds.",
            "Could you send us a screenshot and the exact time the error occurred?",
            "The assistant's answers sometimes cite sources that have nothing to do with the question.",
            "Started this morning.",
            "Only Firefox is affected.",
            "Is this a known issue?",
        ),
        "meeting": (
            "Attendees: {name}, {name} and {name}; notes: {name}.",
            "{name} presents the benchmark results: the new approach is about {pct} percent faster.",
            "Decision: the migration to {component} moves to {date}.",
            "Open question: who owns the documentation of the new API?",
            "The team agrees to limit the sprint goals to three topics.",
            "{name} will find out by next week whether the licence costs are in the budget.",
            "The retrospective showed that code reviews sit idle for too long.",
            "Next meeting: {weekday}, {date}, 10:00 in room {room}.",
            "{name} reminds everyone that test data must not contain real customer data.",
            "Action item: {name} opens a ticket for the missing dashboard metrics.",
            "No objections.",
            "{name} takes it.",
            "Postponed.",
        ),
        "ops": (
            "At {time} the error rate of {service} rose to {pct} percent.",
            "The root cause was a full file system on node {host}.",
            "After the pod restart, latencies returned to normal within {min} minutes.",
            "GPU utilisation stayed above {pct} percent for the whole reindexing run.",
            "Monitoring raised the alert only after {min} minutes; the threshold will be lowered.",
            "Only requests with documents longer than {n} pages were affected.",
            "As an immediate fix, the batch size was reduced from {batch} to {batch}.",
            "The postmortem is in the wiki under {path}.",
            "Memory use of {service} grew slowly overnight to {gb} GB.",
            "Rolling back to version {ver} fixed the problem for now.",
            "Outage duration: {min} minutes.",
            "Status: resolved.",
            "Alert fired at {time}.",
        ),
        "policy": (
            "Employees may work remotely up to {n} days a year if their team agrees.",
            "Travel expenses must be claimed through the portal within thirty days of returning.",
            "Accounting records are kept for ten years.",
            "Personal data may only be processed for the agreed purpose.",
            "The subscription can be cancelled at the end of any month.",
            "The Business plan includes {n} user accounts and {gb} GB of storage.",
            "Please send questions about the privacy policy to privacy@example.com.",
            "New colleagues receive a laptop, an access card and a buddy on their first day.",
            "Changes to production systems need approval from two people.",
            "Leave requests should be submitted at least {days} days in advance.",
            "Team leads decide on exceptions.",
            "Effective from {date}.",
            "Details are on the intranet.",
        ),
    },
    "fr": {
        "docs": (
            "Le service {service} lit sa configuration dans {path} au démarrage.",
            "Depuis la version {ver}, {component} accepte des lots de {n} documents par requête.",
            "Les vecteurs ont {dim} dimensions et sont normalisés avant d'être enregistrés.",
            "Pendant la reconstruction de l'index, l'ancienne version reste disponible en lecture.",
            "Le point d'accès {endpoint} répond en {ms} ms en médiane.",
            "Les documents sont découpés en segments d'au plus {n} jetons avant l'indexation.",
        ),
        "support": (
            "Depuis la mise à jour {ver}, l'envoi de fichiers PDF échoue avec l'erreur {error}.",
            "La cliente {name} signale que la recherche ne renvoie plus aucun résultat.",
            "Pouvez-vous nous envoyer une capture d'écran et l'heure exacte de l'erreur ?",
            "Le ticket {ticket} a été transmis à l'équipe {team} avec une priorité haute.",
            "En attendant, le fichier peut être envoyé en plusieurs parties.",
        ),
        "meeting": (
            "Participants : {name}, {name} et {name}.",
            "Décision : la migration vers {component} est reportée au {date}.",
            "{name} présente les résultats : la nouvelle approche est environ {pct} % plus rapide.",
            "Point ouvert : qui rédige la documentation de la nouvelle interface ?",
            "Prochaine réunion le {date} à 10 h, salle {room}.",
        ),
    },
    "es": {
        "docs": (
            "El servicio {service} lee su configuración desde {path} al arrancar.",
            "A partir de la versión {ver}, {component} admite lotes de hasta {n} elementos.",
            "Los vectores tienen {dim} dimensiones y se normalizan antes de guardarse.",
            "Mientras se reconstruye el índice, la versión anterior sigue disponible.",
            "El endpoint {endpoint} responde en {ms} ms de mediana.",
        ),
        "support": (
            "Desde la actualización a {ver}, la subida de archivos PDF falla con {error}.",
            "El cliente {name} informa de que la búsqueda ya no devuelve resultados.",
            "¿Podría enviarnos una captura de pantalla y la hora exacta del error?",
            "El ticket {ticket} se ha pasado al equipo {team} con prioridad alta.",
            "Como solución temporal, el archivo puede subirse en partes más pequeñas.",
        ),
        "meeting": (
            "Asistentes: {name}, {name} y {name}.",
            "Decisión: la migración a {component} se aplaza al {date}.",
            "{name} presenta los resultados: el nuevo enfoque es un {pct} % más rápido.",
            "Pregunta abierta: ¿quién se encarga de documentar la nueva API?",
            "Próxima reunión: {date} a las 10:00 en la sala {room}.",
        ),
    },
    "zh": {
        "docs": (
            "服务 {service} 在启动时从 {path} 读取配置。",
            "从 {ver} 版本开始，{component} 支持每次请求最多 {n} 条数据。",
            "向量维度为 {dim}，存储前会进行归一化处理。",
            "重建索引期间，旧版本仍然可以正常查询。",
            "接口 {endpoint} 的中位响应时间约为 {ms} 毫秒。",
        ),
        "support": (
            "升级到 {ver} 之后，上传 PDF 文件时出现错误 {error}。",
            "客户 {name} 反馈搜索发票号码时没有任何结果。",
            "请提供截图以及出错的具体时间。",
            "工单 {ticket} 已转交给 {team} 团队处理。",
        ),
        "meeting": (
            "参会人员：{name}、{name} 和 {name}。",
            "决定：迁移到 {component} 的工作推迟到 {date}。",
            "{name} 介绍了测试结果，新方案大约快 {pct}%。",
            "待定事项：由谁负责编写新接口的文档？",
        ),
    },
    "ja": {
        "docs": (
            "サービス {service} は起動時に {path} から設定を読み込みます。",
            "バージョン {ver} 以降、{component} は1回のリクエストで最大 {n} 件を処理できます。",
            "ベクトルは {dim} 次元で、保存前に正規化されます。",
            "インデックスの再構築中も、旧バージョンは引き続き検索できます。",
            "エンドポイント {endpoint} の応答時間の中央値は約 {ms} ミリ秒です。",
        ),
        "support": (
            "{ver} へのアップデート以降、PDF のアップロードで {error} が発生します。",
            "{name} 様から、請求書番号で検索しても結果が表示されないとの報告がありました。",
            "エラーが発生した正確な時刻とスクリーンショットを送っていただけますか。",
            "チケット {ticket} は {team} チームに引き継がれました。",
        ),
        "meeting": (
            "参加者：{name}、{name}、{name}。",
            "決定事項：{component} への移行は {date} に延期します。",
            "{name} さんがベンチマーク結果を報告し、新方式は約 {pct}% 高速でした。",
            "未決事項：新しい API のドキュメントは誰が担当しますか。",
        ),
    },
}

# Tiny parts to close the last gap to the target without overshooting it.
FRAGMENTS: dict[str, tuple[str, ...]] = {
    "de": ("Danke.", "OK.", "Erledigt.", "Siehe Anhang.", "Status: offen.", "Bitte prüfen.", "Viele Grüße"),
    "en": ("Thanks.", "OK.", "Done.", "See attached.", "Status: open.", "Please check.", "Cheers"),
    "fr": ("Merci.", "OK.", "Voir pièce jointe.", "Cordialement"),
    "es": ("Gracias.", "OK.", "Ver adjunto.", "Saludos"),
    "zh": ("谢谢。", "好。", "见附件。", "已完成。"),
    "ja": ("以上です。", "了解。", "対応済み。", "添付参照。"),
}

HEADINGS: dict[str, tuple[str, ...]] = {
    "de": ("Überblick", "Installation", "Konfiguration", "Fehlerbehebung", "Offene Punkte", "Ergebnisse",
           "Nächste Schritte", "Hintergrund", "Details", "Anmerkungen"),
    "en": ("Overview", "Installation", "Configuration", "Troubleshooting", "Open questions", "Results",
           "Next steps", "Background", "Details", "Notes"),
    "fr": ("Aperçu", "Configuration", "Dépannage", "Résultats", "Prochaines étapes"),
    "es": ("Resumen", "Configuración", "Solución de problemas", "Resultados", "Próximos pasos"),
    "zh": ("概述", "配置", "故障排除", "结果", "下一步"),
    "ja": ("概要", "設定", "トラブルシューティング", "結果", "今後の予定"),
}  # fmt: skip

TITLES: dict[str, tuple[str, ...]] = {
    "de": ("Betriebshandbuch {component} {ver}", "Protokoll Plattform-Sync vom {date}", "Störungsbericht {ticket}",
           "Leitfaden: Embeddings mit {component}"),
    "en": ("{component} {ver} operations handbook", "Platform sync notes, {date}", "Incident report {ticket}",
           "Guide: embeddings with {component}"),
    "fr": ("Manuel d'exploitation {component} {ver}", "Compte rendu du {date}"),
    "es": ("Manual de operación de {component} {ver}", "Acta de la reunión del {date}"),
    "zh": ("{component} {ver} 运维手册", "{date} 会议纪要"),
    "ja": ("{component} {ver} 運用マニュアル", "{date} 議事録"),
}  # fmt: skip

EMOJI: tuple[str, ...] = ("👍", "✅", "⚠️", "🚀", "🙏", "🔥", "📎", "🤔")
EMOJI_DOMAINS = frozenset({"support", "meeting"})
EMOJI_SHARE = 0.15

_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "service": ("embedding-service", "search-api", "ingest-worker", "auth-gateway", "ollama", "vector-db",
                "reranker", "ocr-pipeline"),
    "component": ("Qdrant", "PostgreSQL", "Redis", "Kubernetes", "BGE-M3", "Elasticsearch", "FastAPI", "Celery",
                  "Grafana", "pgvector"),
    "path": ("/etc/app/config.yaml", "docs/runbooks/embeddings.md", "/var/log/ingest/worker.log",
             "wiki/Betrieb/Postmortems", "deploy/helm/values.yaml"),
    "envvar": ("EMBEDDING_URL", "OLLAMA_HOST", "MAX_BATCH_SIZE", "INDEX_SHARDS", "EMBED_TIMEOUT_S"),
    "endpoint": ("/api/embed", "/v1/search", "/health", "/api/documents", "/v1/rerank"),
    "error": ("HTTP 500", "HTTP 413 Payload Too Large", "ERR_CONNECTION_RESET", "CUDA error: out of memory",
              "TimeoutError", "PermissionDenied"),
    "name": ("Anna", "Jonas", "Mehmet", "Lea", "Priya", "Lukas", "Sophie", "Tobias", "Fatima", "Chen Wei", "Marie",
             "Paul", "Kenji", "Lucía"),
    "team": ("Plattform", "Search", "Data", "Support L2", "Infra", "Security"),
    "room": ("Rhein", "Elbe", "Spree", "A3.14", "Main"),
    "gb": ("8", "16", "32", "64", "128"),
    "dim": ("384", "768", "1024"),
    "batch": ("8", "16", "32", "64", "128", "256"),
}  # fmt: skip

_LOCAL_SLOTS: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {"weekday": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag")},
    "en": {"weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")},
}

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
    goal = round(target * rng.uniform(0.95, 1.05))  # per-text spread; the mean stays near target
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
    """The accepted token counts for a target: [ceil(target*0.9), floor(target*1.1)]."""
    return math.ceil(round(target * (1 - TOLERANCE), 6)), math.floor(round(target * (1 + TOLERANCE), 6))


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
