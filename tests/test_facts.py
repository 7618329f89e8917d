"""Fact accuracy of `rag eval` (rag.evaluate.facts_ok): an answer holds the expected facts,
numbers expected in digits also when the answer writes them in Chinese numerals. Fast: no model."""
from __future__ import annotations

import pytest

from rag.evaluate import facts_ok


@pytest.mark.parametrize("n, form", [
    (4, "四"), (2, "两"), (12, "十二"), (15, "十五"), (20, "二十"), (101, "一百零一"),
    (171, "一百七十一"), (1865, "一千八百六十五"), (1865, "一八六五"), (2000, "两千"),
    (11000, "一万一千"), (32500, "三万二千五百"), (120000, "十二万"), (200000000, "两亿"),
])
def test_chinese_numerals_of_whole_numbers(n, form):
    assert facts_ok(f"共有{form}个", [[str(n)]])
    assert facts_ok(f"共有{form}个", [[f"{n:,}"]])  # "32,500" as the gold writes it


def test_a_number_in_chinese_numerals_holds_the_fact():
    assert facts_ok("该张专辑共有四首歌，而且四首歌都有拍摄MV。[1]", [["4", "four"]])
    assert facts_ok("可容纳三万二千五百名观众", [["32,500"]])
    assert facts_ok("自由式小轮车包括五个不同的类型", [["5", "five"]])


def test_a_numeral_inside_a_longer_number_or_word_does_not():
    assert not facts_ok("共有十五个类型", [["5"]])
    assert not facts_ok("共有二十四个", [["4"]])
    assert not facts_ok("三万二千五百零一人", [["32500"]])
    assert not facts_ok("全国统一", [["1"]])  # 一 is part of too many words to count alone
    assert not facts_ok("共有四首歌", [["4"], ["MV"]])  # every group still has to hold


def test_plain_alternatives_still_match_as_text():
    assert facts_ok("He was born in 1940.", [["1940"]])
    assert facts_ok("成立于民國7年", [["民国7年"]])  # traditional answers are compared simplified
    assert not facts_ok("成立于1918年", [["1919"]])
