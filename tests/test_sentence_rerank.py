"""The sentence rerank of the hybrid search (rag/retrieval.py `Searcher._sentence_rerank`):
near-tied first candidates are re-ordered by the sentence nearest the question."""
from __future__ import annotations

import numpy as np
import pytest

from rag.types import Chunk
from tests.test_retrieval_coord import DOCS, _searcher_over


class SentenceEmbedder:
    """Unit vectors: a sentence saying 答案 points where the question does, others elsewhere."""

    name = "stub"
    dim = 2

    def __init__(self):
        self.embedded: list[str] = []

    def embed_passages(self, texts):
        self.embedded += list(texts)
        return np.array([[1.0, 0.0] if "答案" in t else [0.6, 0.8] for t in texts], dtype=np.float32)


def _chunk(cid: str, text: str) -> Chunk:
    return Chunk(id=cid, source=f"{cid}.md", text=text, start=0, end=len(text))


def test_the_near_tie_whose_sentence_answers_comes_first(tmp_path, fake_embedder, monkeypatch):
    searcher = _searcher_over(DOCS, tmp_path, fake_embedder)
    stub = SentenceEmbedder()
    monkeypatch.setattr(searcher, "embedder", stub)
    s = searcher.settings
    monkeypatch.setattr(s, "sentence_weight", 5.0)
    monkeypatch.setattr(s, "sentence_depth", 3)
    monkeypatch.setattr(s, "sentence_margin", 0.2)
    fetched = {
        "a": _chunk("a", "越南科举历史悠久。科举影响深远。"),
        "b": _chunk("b", "汉字使用渐少。这里是答案。"),
        "c": _chunk("c", "这里也是答案。"),  # further behind than the margin: not re-read
        "d": _chunk("d", "今天的天气很好。"),
    }
    ranked = [("a", 1.0), ("b", 0.95), ("c", 0.5), ("d", 0.4)]
    q = np.array([1.0, 0.0], dtype=np.float32)

    out = searcher._sentence_rerank(ranked, fetched, q)
    assert [cid for cid, _ in out] == ["b", "a", "c", "d"]
    assert out[0][1] == pytest.approx(0.95 + 5.0 * 1.0) and out[1][1] == pytest.approx(1.0 + 5.0 * 0.6)
    # the head still outranks the rest, and only the near tie's sentences were embedded
    assert out[1][1] > out[2][1]
    assert sorted(stub.embedded) == sorted(["越南科举历史悠久。", "科举影响深远。", "汉字使用渐少。", "这里是答案。"])
    # each chunk's sentences are embedded once per index
    stub.embedded.clear()
    assert searcher._sentence_rerank(ranked, fetched, q) == out and stub.embedded == []
    # off, or no near tie: the order stands and nothing is embedded
    monkeypatch.setattr(s, "sentence_weight", 0.0)
    assert searcher._sentence_rerank(ranked, fetched, q) == ranked
    monkeypatch.setattr(s, "sentence_weight", 5.0)
    far = [("a", 1.0), ("b", 0.7), ("c", 0.5)]
    assert searcher._sentence_rerank(far, fetched, q) == far


def test_a_search_returns_the_reranked_order(tmp_path, fake_embedder, monkeypatch):
    # through the whole search: scores stay in rank order, and the re-read changes them
    searcher = _searcher_over(DOCS, tmp_path, fake_embedder)
    question = "越南的科举于何时废除？"
    monkeypatch.setattr(searcher.settings, "sentence_weight", 5.0)
    monkeypatch.setattr(searcher.settings, "sentence_margin", 10.0)
    hits = searcher.search(question, 5)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    monkeypatch.setattr(searcher.settings, "sentence_weight", 0.0)
    searcher._sentence_memo.clear()
    plain = searcher.search(question, 5)
    assert hits[0].score > plain[0].score
