"""Search tokens: jieba tokens of simplified, lower-cased text minus stopwords and punctuation.

Its own light module (no Chroma, settings or numpy) so that the indexer's tokeniser process starts fast.
"""
from __future__ import annotations

import re

import rjieba

from rag.lang import to_simplified
from rag.text import stopwords

_TOKEN_OK_RE = re.compile(r"[\w\u3400-\u9fff]")
# Function words and question words that carry no topic (rag/data/stopwords_search.txt).
STOPWORDS = stopwords("search")

# jieba's cut_for_search, computed by rjieba (jieba-rs: the same dictionary and HMM, in Rust).
# Python jieba needs about a second to load its dictionary in every process and cuts ten
# times slower; that load was most of the time of adding one file to a large index. rjieba
# alone treats Latin letters and digits its own way ("getchu.com", "1.420g" stay whole and
# their pieces are added as search grams), so the three steps jieba takes around its
# segmenter are kept here, with jieba's own patterns: cut into blocks (_BLOCK), split a
# non-Chinese word that is not a dictionary word as jieba's HMM does (_ALNUM), and add the
# 2- and 3-character dictionary words inside long words. tests/test_tokens.py checks the
# result equals jieba's on the seed article, the eval corpora and edge cases.
_BLOCK = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)", re.U)  # jieba.re_han_default
_SPACE = re.compile("(\r\n|\\s)", re.U)  # jieba.re_skip_default
_HAN = re.compile("[\u4E00-\u9FD5]")
_ALNUM = re.compile("([a-zA-Z0-9]+(?:\\.\\d+)?%?)")  # jieba.finalseg.re_skip


def _cut(text: str):
    for blk in _BLOCK.split(text):
        if not blk:
            continue
        if _BLOCK.match(blk):
            for w in rjieba.cut(blk, True):
                if len(w) == 1 or _HAN.search(w) or rjieba.has_word(w):
                    yield w
                else:
                    yield from (x for x in _ALNUM.split(w) if x)
        else:
            for x in _SPACE.split(blk):
                if _SPACE.match(x):
                    yield x
                else:
                    yield from x


def cut_for_search(text: str):
    """jieba.cut_for_search(text) (HMM on), by rjieba."""
    for w in _cut(text):
        if len(w) > 2:
            for i in range(len(w) - 1):
                if rjieba.has_word(w[i:i + 2]):
                    yield w[i:i + 2]
        if len(w) > 3:
            for i in range(len(w) - 2):
                if rjieba.has_word(w[i:i + 3]):
                    yield w[i:i + 3]
        yield w


def tokenize(text: str) -> list[str]:
    """Search tokens: simplified, lower-cased jieba tokens minus stopwords and
    punctuation. cut_for_search also emits the words inside long compounds,
    so 制造业 matches both 制造业 and 制造."""
    simp = to_simplified(text).lower()
    return [
        t
        for t in (w.strip() for w in cut_for_search(simp))
        if t and t not in STOPWORDS and _TOKEN_OK_RE.search(t)
    ]
