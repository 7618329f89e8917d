"""Domain types shared by every stage: chunks, hits, citations, answers.

Plain dataclasses so the CLI, UI, HTTP API and eval all speak the same words.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """A passage of a document, the unit that is embedded, retrieved and cited.

    `text` is the cleaned text (pinyin stripped, punctuation folded) with the
    section heading NOT included; `start`/`end` are character offsets into the
    original decoded file, so `original[start:end]` is what a citation shows.
    """

    id: str
    source: str  # path relative to the seeds folder, e.g. "000_e27.txt"
    text: str
    start: int
    end: int
    heading: str = ""
    ordinal: int = 0  # position of the chunk in its document

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hit:
    """A retrieved chunk with its fused score and the scores that made it."""

    chunk: Chunk
    score: float
    rank: int = 0
    dense_score: float | None = None
    keyword_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.chunk.id,
            "text": self.chunk.text,
            "source": self.chunk.source,
            "heading": self.chunk.heading,
            "score": round(float(self.score), 6),
            "dense_score": None if self.dense_score is None else round(float(self.dense_score), 6),
            "keyword_score": None if self.keyword_score is None else round(float(self.keyword_score), 6),
            "start": self.chunk.start,
            "end": self.chunk.end,
        }


@dataclass
class Citation:
    """[n] in an answer -> the passage, its file and its span in the original file."""

    n: int
    source: str
    text: str
    start: int
    end: int
    chunk_id: str = ""
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "source": self.source,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "chunk_id": self.chunk_id,
            "score": round(float(self.score), 6),
        }


@dataclass
class Answer:
    """What the assistant replies: text with [n] markers, its citations, and flags."""

    text: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    question: str = ""
    standalone_question: str = ""  # the question actually used for retrieval (multi-turn rewrite)
    lang: str = ""  # "en" | "zh-Hans" | "zh-Hant"
    mode: str = "extractive"  # "extractive" | "llm"
    hits: list[Hit] = field(default_factory=list)
    notice: str = ""  # e.g. "LLM not prepared; answering in extractive mode"

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question or self.question,
            "lang": self.lang,
            "mode": self.mode,
            "answer": self.text,
            "refused": self.refused,
            "citations": [c.to_dict() for c in self.citations],
            "retrieved": [h.to_dict() for h in self.hits],
            "notice": self.notice,
        }


class UserError(Exception):
    """An error the user caused or can fix (no index, empty question, bad file, model not prepared).

    The CLI prints its message on one line and exits non-zero; the UI/API show it.
    """
