"""The search tokeniser (rjieba with jieba's handling of Latin text and digits) cuts exactly as
jieba.cut_for_search does, so indexes built with either read the same, and BM25 is unchanged."""
from __future__ import annotations

from pathlib import Path

import jieba
import pytest

from rag.lang import to_simplified
from rag.tokens import cut_for_search, tokenize

ROOT = Path(__file__).resolve().parent.parent

EDGE = [
    "getchu.com的td-scdma和1.420g，x-15战机与formula_1",
    "C++ 与 c# 编程，T恤、B超、4S店、卡拉OK、AA制",
    "0.3075au 的距离，增长 12.5%，1174-1189 年间，2001-2002 赛季",
    "深圳体育场一共有4层，每层分别设有运动员、裁判员、其他工作人员和观众的入口",
    "上海市加快推動人工智能發展\r\n第二行\t制表 空格  两个",
    "罗彦瓌（），太原（今山西太原）人",
    "Minoru Endō 写了五千多首作品 ok OK",
    "",
    "。。。！？",
]


def _paragraphs():
    files = sorted((ROOT / "seeds").glob("*")) + sorted((ROOT / "evals").glob("*/corpus/*"))
    for f in files:
        if f.is_file():
            for para in f.read_text(encoding="utf-8", errors="replace").split("\n"):
                if para.strip():
                    yield to_simplified(para).lower()


@pytest.fixture(scope="module")
def jb():
    jieba.setLogLevel(30)
    jieba.initialize()
    return jieba


@pytest.mark.parametrize("text", EDGE)
def test_edge_cases_cut_as_jieba(jb, text):
    for t in (text, text.lower(), to_simplified(text).lower()):
        assert list(cut_for_search(t)) == list(jb.cut_for_search(t))


def test_documents_cut_as_jieba(jb):
    paras = list(_paragraphs())
    assert len(paras) > 300  # the seed article and the public corpora
    differ = [p for p in paras if list(cut_for_search(p)) != list(jb.cut_for_search(p))]
    assert differ == []


def test_tokenize_filters_stopwords_and_punctuation():
    toks = tokenize("深圳體育場的觀眾，可容納32500名！")
    assert "深圳" in toks and "体育场" in toks and "观众" in toks and "32500" in toks
    assert "的" not in toks and "，" not in toks and "！" not in toks
