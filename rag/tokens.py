"""Search tokens: jieba tokens of simplified, lower-cased text minus stopwords and punctuation.

Its own light module (no Chroma, settings or numpy) so that the indexer's tokeniser process starts fast.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache

from rag.lang import to_simplified

_TOKEN_OK_RE = re.compile(r"[\w\u3400-\u9fff]")
# Function words and question words that carry no topic.
STOPWORDS = set(
    """的 了 是 在 和 与 及 或 也 都 就 而 又 并 把 被 让 给 对 从 向 以 于 为 其 之 这 那 这个 那个 这些 那些
    一个 一些 有 有的 没有 我 你 他 她 它 我们 你们 他们 什么 怎么 怎样 如何 为什么 哪 哪里 哪儿 哪个 哪些 谁 多少 几
    吗 呢 吧 啊 呀 么 请问 请 告诉 关于 哪年 何时 什么时候 是否 能否 可以 会 要 还 中 上 下 里 等 个 做 说 提到 文章 文中
    提出 根据 the a an of in on at to for and or is are was were be been what which who whom whose when where why how
    did do does doing done has have had it its this that these those by with from as about into than then there their
    they them he she his her we our you your i me my tell please according article text mentioned mention""".split()
)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


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
