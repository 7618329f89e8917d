"""Extractive answers: the best-supported sentences of the retrieved chunks,
each cited, or a plain refusal when the documents do not support an answer.

No model generates text here, so it works with nothing but the embedder;
Chinese output follows the question's script.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterator

from rag.chunking import split_sentences
from rag.lang import detect_lang, to_script
from rag.retrieval import query_tokens, tokenize
from rag.types import Answer, Citation, Hit

REFUSALS = {
    "en": "The documents do not contain the answer to this question.",
    "zh-Hans": "文档中没有找到这个问题的答案。",
    "zh-Hant": "文件中沒有找到這個問題的答案。",
}
_LEADS = {
    "en": "From the documents (quoted in the original Chinese):",
    "zh-Hans": "根据文档：",
    "zh-Hant": "根據文件：",
}
_NUM_RE = re.compile(r"\d+(?:\.\d+)?")


def refusal_text(lang: str) -> str:
    return REFUSALS.get(lang, REFUSALS["en"])


@dataclass
class Support:
    """How well the retrieved passages cover the question's content."""

    coverage: float  # idf-weighted share of query terms found in the best hit
    best_dense: float

    def answerable(self, min_coverage: float, min_dense: float) -> bool:
        return self.coverage >= min_coverage and self.best_dense >= min_dense


def _idf(term: str, doc_tokens: list[set[str]]) -> float:
    n = len(doc_tokens) or 1
    df = sum(1 for toks in doc_tokens if term in toks)
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


class ExtractiveAnswerer:
    """Builds an answer from retrieved sentences; refuses on weak support."""

    mode = "extractive"

    def __init__(self, min_coverage: float = 0.5, min_dense: float = 0.80, max_sentences: int = 2,
                 corpus_tokens: list[set[str]] | None = None):
        self.min_coverage = min_coverage
        self.min_dense = min_dense
        self.max_sentences = max_sentences
        self.corpus_tokens = corpus_tokens or []

    def _query_groups(self, question: str) -> list[list[str]]:
        """Query terms as groups of alternatives (tokens): one per Chinese
        token, or one per English content word bridged to Chinese."""
        groups = [[t] for t in dict.fromkeys(tokenize(question)) if not t.isascii() or t.isdigit()]
        if detect_lang(question) == "en":
            from rag.crossling import bridge_groups

            for g in bridge_groups(question):
                toks = [t for term in g for t in (tokenize(term) or [term.lower()])]
                if toks:
                    groups.append(list(dict.fromkeys(toks)))
        else:  # Latin words inside a Chinese question (AI, PPT) count as they are
            groups += [[t] for t in dict.fromkeys(tokenize(question)) if t.isascii() and not t.isdigit()]
        return groups

    def support(self, question: str, hits: list[Hit]) -> Support:
        if not hits:
            return Support(0.0, 0.0)
        groups = self._query_groups(question)
        docs = self.corpus_tokens or [set(tokenize(h.chunk.text)) for h in hits]
        weights = [max(_idf(t, docs) for t in g) for g in groups]
        total = sum(weights) or 1.0
        best = 0.0
        for h in hits[:3]:
            toks = set(tokenize(f"{h.chunk.heading} {h.chunk.text}"))
            covered = sum(w for g, w in zip(groups, weights) if any(t in toks for t in g))
            best = max(best, covered / total)
        dense = max((h.dense_score or 0.0) for h in hits[:3])
        return Support(best, dense)

    def _pick_sentences(self, question: str, hits: list[Hit]) -> list[tuple[int, str]]:
        """(hit index, sentence) pairs, best first, from the top hits."""
        q = set(query_tokens(question))
        scored = []
        for hi, h in enumerate(hits[:3]):
            text = h.chunk.text
            for a, b in split_sentences(text):
                sent = text[a:b]
                toks = set(tokenize(sent))
                overlap = len(q & toks) / (len(q) or 1)
                nums = set(_NUM_RE.findall(question)) & set(_NUM_RE.findall(sent))
                score = overlap + 0.2 * len(nums) + 0.15 * (1.0 / (hi + 1))
                scored.append((score, hi, a, sent))
        scored.sort(key=lambda s: -s[0])
        picked = []
        for score, hi, a, sent in scored:
            if score <= 0.15 and picked:
                break
            picked.append((hi, a, sent))
            if len(picked) >= self.max_sentences:
                break
        # Keep document order within the same passage for readability.
        picked.sort(key=lambda p: (p[0], p[1]))
        return [(hi, sent) for hi, _, sent in picked]

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer:
        sup = self.support(question, hits)
        if not sup.answerable(self.min_coverage, self.min_dense):
            return Answer(refusal_text(lang), True, [], question, lang=lang, mode=self.mode, hits=hits)
        picked = self._pick_sentences(question, hits)
        numbers: dict[int, int] = {}
        citations: list[Citation] = []
        parts = []
        for hi, sent in picked:
            if hi not in numbers:
                n = len(numbers) + 1
                numbers[hi] = n
                h = hits[hi]
                citations.append(
                    Citation(n, h.chunk.source, h.chunk.text, h.chunk.start, h.chunk.end, h.chunk.id, h.score)
                )
            parts.append(f"{to_script(sent, lang)}[{numbers[hi]}]")
        lead = _LEADS.get(lang, _LEADS["en"])
        sep = " " if lang == "en" else ""
        text = lead + (" " if lang == "en" else "") + sep.join(parts)
        return Answer(text, False, citations, question, lang=lang, mode=self.mode, hits=hits)

    def stream(self, question: str, hits: list[Hit], lang: str) -> Iterator[str | Answer]:
        ans = self.answer(question, hits, lang)
        yield ans.text
        yield ans
