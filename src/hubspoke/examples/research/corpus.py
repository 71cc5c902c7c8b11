"""The bundled corpus and the `search` tool over it (read-only, deterministic, offline).

The corpus (`data/corpus.json.gz`, written by `scripts/generate_research_corpus.py`) is about a
thousand short fictional documents about the invented province of Veldmark. `search` ranks them
with SQLite's FTS5 (BM25 over title and text): the index is built in memory at the first search
of each process, from the packaged file; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Annotated, Any

from pydantic import Field

__all__ = [
    "TRUST",
    "Corpus",
    "corpus",
    "document",
    "search",
    "sentences",
    "source_kind",
    "words",
]

TRUST: dict[str, int] = {
    "official": 5,
    "newspaper": 4,
    "trade": 4,
    "wire": 3,
    "blog": 1,
    "forum": 1,
}
"""How far each kind of source is trusted when two disagree (higher wins)."""

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "over",
        "says",
        "say",
        "said",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "about",
        "into",
        "after",
        "before",
        "during",
        "me",
        "tell",
        "give",
        "know",
        "known",
        "much",
        "many",
        "any",
        "all",
        "our",
        "we",
        "you",
        "your",
        "i",
    ]
)

_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:[-'][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def words(text: str) -> list[str]:
    """The lower-cased words and numbers of `text`, in order (``1,150`` and ``3.4`` are one
    word each; punctuation is dropped)."""
    return [w.lower() for w in _WORD.findall(text)]


def sentences(text: str) -> list[str]:
    """The sentences of a document's text, in order."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@dataclass(frozen=True, slots=True)
class Corpus:
    """The loaded corpus: documents by id and the kind of each source."""

    documents: tuple[dict[str, Any], ...]
    by_id: dict[str, dict[str, Any]]
    kinds: dict[str, str]
    """Source name → its kind: official, newspaper, trade, wire, blog or forum."""
    rarity: dict[str, float]
    """Stemmed word → its inverse document frequency: rare words weigh more in a snippet."""


@cache
def corpus() -> Corpus:
    """The bundled corpus, read once per process."""
    raw = resources.files("hubspoke.examples.research").joinpath("data/corpus.json.gz").read_bytes()
    data = json.loads(gzip.decompress(raw))
    documents = tuple(data["documents"])
    frequency: Counter[str] = Counter()
    for doc in documents:
        frequency.update({_stem(w) for w in words(doc["title"] + " " + doc["text"])})
    return Corpus(
        documents=documents,
        by_id={d["id"]: d for d in documents},
        kinds={s["name"]: s["kind"] for s in data["sources"]},
        rarity={w: math.log(len(documents) / n) for w, n in frequency.items()},
    )


def document(doc_id: str) -> dict[str, Any] | None:
    """The document with this id (``d0042``), or None."""
    return corpus().by_id.get(doc_id)


def source_kind(source: str) -> str:
    """The kind of a source by name; ``unknown`` for a source the corpus does not list."""
    return corpus().kinds.get(source, "unknown")


class _Index:
    """An in-memory FTS5 index of the corpus, built once per process; searches may come from
    several worker threads at once (sync tools run in threads), so one lock guards the
    connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _build(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute(
            "CREATE VIRTUAL TABLE docs USING fts5("
            "id UNINDEXED, title, text, date UNINDEXED, source UNINDEXED, "
            "tokenize='porter unicode61')"
        )
        db.executemany(
            "INSERT INTO docs (id, title, text, date, source) VALUES (?, ?, ?, ?, ?)",
            [(d["id"], d["title"], d["text"], d["date"], d["source"]) for d in corpus().documents],
        )
        return db

    def query(self, match: str, since: str, until: str, limit: int) -> list[tuple[str, float]]:
        with self._lock:
            if self._db is None:
                self._db = self._build()
            rows = self._db.execute(
                "SELECT id, bm25(docs, 2.0, 1.0) AS score FROM docs "
                "WHERE docs MATCH ? AND date >= ? AND date <= ? ORDER BY score, id LIMIT ?",
                (match, since, until, limit),
            ).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]


_INDEX = _Index()


def _snippet(text: str, terms: set[str]) -> str:
    """The sentence of `text` whose query terms weigh most, rarer terms weighing more (the
    first such)."""
    rarity = corpus().rarity
    best, best_score = "", -1.0
    for sentence in sentences(text):
        score = sum(rarity.get(t, 0.0) for t in terms & {_stem(w) for w in words(sentence)})
        if score > best_score:
            best, best_score = sentence, score
    return best


def search(
    query: Annotated[str, Field(min_length=1, max_length=300)],
    limit: Annotated[int, Field(ge=1, le=10)] = 5,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[dict[str, Any]]:
    """Search the news corpus; the best matches first, with the sentence that matches best.

    Args:
        query: words to look for (any of them; documents matching more and rarer words rank
            first). Operators and punctuation are ignored.
        limit: how many documents to return, 1 to 10.
        date_from: only documents dated on or after this day (YYYY-MM-DD).
        date_to: only documents dated on or before this day (YYYY-MM-DD).

    Returns:
        Up to `limit` hits, each ``{"id", "title", "date", "source", "source_kind",
        "snippet"}``, best first (BM25 rank, then id). `snippet` is one whole sentence of the
        document, quoted exactly.

    Raises:
        ValueError: the query has no word to search for, or `date_from` is after `date_to`.
    """
    terms = [w for w in words(query) if w not in STOPWORDS]
    if not terms:
        raise ValueError(
            f"the query {query!r} has no word to search for (only stop words or punctuation); "
            "give the names or subjects to look for"
        )
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ValueError(
            f"date_from ({date_from}) is after date_to ({date_to}): swap them, or drop one"
        )
    # Each term quoted: FTS5's own syntax (AND, NEAR, -, :, ^, quotes) never reaches it.
    match = " OR ".join('"' + t.replace('"', "") + '"' for t in dict.fromkeys(terms))
    since = date_from.isoformat() if date_from else "0000-00-00"
    until = date_to.isoformat() if date_to else "9999-99-99"
    stems = {_stem(t) for t in terms}
    hits = []
    for doc_id, _score in _INDEX.query(match, since, until, limit):
        doc = corpus().by_id[doc_id]
        hits.append(
            {
                "id": doc_id,
                "title": doc["title"],
                "date": doc["date"],
                "source": doc["source"],
                "source_kind": source_kind(doc["source"]),
                "snippet": _snippet(doc["text"], stems),
            }
        )
    return hits
