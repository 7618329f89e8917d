"""Search tokens: jieba tokens of simplified, lower-cased text minus stopwords and punctuation.

Its own light module (no Chroma, settings or numpy) so that the indexer's tokeniser process starts fast.
"""
from __future__ import annotations

import re

from rag.lang import to_simplified
from rag.text import jieba, stopwords

_TOKEN_OK_RE = re.compile(r"[\w\u3400-\u9fff]")
# Function words and question words that carry no topic (rag/data/stopwords_search.txt).
STOPWORDS = stopwords("search")
_jieba = jieba  # the one jieba setup (rag.text), cached: its cache_info() says whether it is loaded


def tokenize(text: str) -> list[str]:
    """Search tokens: simplified, lower-cased jieba tokens minus stopwords and
    punctuation. cut_for_search also emits the words inside long compounds,
    so 制造业 matches both 制造业 and 制造."""
    jb = _jieba()
    simp = to_simplified(text).lower()
    return [
        t
        for t in (w.strip() for w in jb.cut_for_search(simp))
        if t and t not in STOPWORDS and _TOKEN_OK_RE.search(t)
    ]
