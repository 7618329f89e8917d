"""rag.crossling: English question -> simplified-Chinese BM25 terms."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag import crossling
from rag.crossling import bridge_terms

REPO = Path(__file__).resolve().parent.parent


def test_shanghai_august():
    terms = bridge_terms("What did Shanghai announce in August?")
    assert "上海" in terms
    assert "8月" in terms
    assert "发布" in terms  # "announce" via lemma + dictionary, not left in English


def test_global_industrial_ai_market():
    terms = bridge_terms("How large was the global industrial AI market in 2024?")
    assert "工业" in terms or "工业AI" in terms
    assert "市场" in terms or "市场规模" in terms
    assert "全球" in terms
    assert "2024" in terms  # years stay as digits


def test_city_level_ai_bureau():
    terms = bridge_terms("Where is the first city-level artificial intelligence bureau?")
    assert "人工智能" in terms
    assert "局" in terms
    assert "市级" in terms


def test_multiword_phrases_from_dictionary():
    # phrases CC-CEDICT defines exactly; none of them is in the hand glossary
    assert bridge_terms("foreign trade")[0] == "外贸"
    assert bridge_terms("labor force")[0] == "劳动力"
    assert bridge_terms("the State Council")[0] == "国务院"
    assert bridge_terms("artificial intelligence") == ["人工智能"]
    assert "工信部" in bridge_terms("Ministry of Industry and Information Technology")
    assert "工信部" in bridge_terms("What did MIIT say?")


def test_common_word_ranked_first():
    assert bridge_terms("market")[0] == "市场"
    assert bridge_terms("manufacturing")[:2] == ["制造业", "制造"]
    assert bridge_terms("risk")[0] == "风险"


def test_light_lemmatisation():
    assert bridge_terms("markets")[0] == "市场"
    assert "城市" in bridge_terms("cities")
    assert "投资" in bridge_terms("invested")
    assert "发布" in bridge_terms("announced")
    assert "企业" in bridge_terms("companies")


def test_months_numbers_and_may():
    assert bridge_terms("in May") == ["5月"]
    terms = bridge_terms("What happened in September 2025?")
    assert terms[-2:] == ["9月", "2025"] and "September" not in terms
    assert "93%" in bridge_terms("Is it 93% of firms?")
    # the modal verb is not the month
    assert "5月" not in bridge_terms("what may happen to markets")


def test_us_country_vs_pronoun():
    assert "美国" in bridge_terms("compared with the US")
    assert "美国" not in bridge_terms("tell us about markets")


@pytest.mark.parametrize(
    "name,zh",
    [
        ("Shanghai", "上海"), ("Beijing", "北京"), ("Zhejiang", "浙江"), ("Wenzhou", "温州"),
        ("Guangxi", "广西"), ("Anhui", "安徽"), ("Sichuan", "四川"), ("Hebei", "河北"),
        ("Shenzhen", "深圳"), ("Guizhou", "贵州"), ("Wuhan", "武汉"), ("Suzhou", "苏州"),
        ("Chengdu", "成都"), ("Hangzhou", "杭州"), ("Hefei", "合肥"), ("Guangzhou", "广州"),
    ],
)
def test_places_resolve(name, zh):
    assert bridge_terms(f"What did {name} do?") == [zh]


def test_stopwords_and_question_words_dropped():
    assert bridge_terms("What is the? Where, when, who, how and why did they do it?") == []
    terms = bridge_terms("What are the risks?")
    assert terms and all(not t.isascii() for t in terms)
    assert terms[0] == "风险"


def test_chinese_question_gives_nothing_to_add():
    assert bridge_terms("上海8月发布了什么？") == []
    assert bridge_terms("全國首個市級人工智能管理機構在哪裡？") == []
    assert bridge_terms("") == []
    # mixed: only the English part is bridged
    assert bridge_terms("上海的 market") == ["市场", "销售", "推销"][: len(bridge_terms("上海的 market"))]
    assert bridge_terms("上海的 market")[0] == "市场"


def test_second_call_much_faster_than_first(monkeypatch):
    monkeypatch.setattr(crossling, "_INDEX", None)
    t0 = time.perf_counter()
    first = bridge_terms("What did Shanghai announce in August?")
    t1 = time.perf_counter()
    for _ in range(20):
        again = bridge_terms("How large was the global industrial AI market in 2024?")
    t2 = time.perf_counter()
    assert first and again
    per_call = (t2 - t1) / 20
    assert per_call * 20 < (t1 - t0), (t1 - t0, per_call)


def test_data_comes_from_installed_package():
    import importlib.util

    path = Path(crossling.cedict_path())
    spec = importlib.util.find_spec(crossling.CEDICT_PACKAGE)
    assert spec is not None
    assert any(path.is_relative_to(loc) for loc in spec.submodule_search_locations)
    assert "site-packages" in path.parts  # an installed package, not vendored
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        head = fh.read(2000)
    assert "CC-CEDICT" in head and "creativecommons.org/licenses/by-sa/4.0" in head
    assert not any((REPO / "rag").glob("**/cedict*")), "no vendored copy of CC-CEDICT"


def test_index_build_and_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("RAG_CROSSLING_NO_CACHE", raising=False)
    built = crossling._load_index()  # builds from the package file, writes the cache
    assert built.simp is not None  # freshly built, not read from a cache
    files = list(tmp_path.rglob("*.marshal"))
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000
    loaded = crossling._load_index()  # from the cache
    assert loaded.simp is None and loaded.phrase.keys() == built.phrase.keys()
    for idx in (built, loaded):
        assert crossling._lookup_phrase("state council", idx)[0] == "国务院"
        assert crossling._lookup_word("market", idx)[0] == "市场"
        assert crossling._lookup_word("cities", idx) == crossling._lookup_word("cities", built)
    # a corrupt cache is ignored and rebuilt
    files[0].write_bytes(b"garbage")
    again = crossling._load_index()
    assert again.simp is not None
    assert crossling._lookup_phrase("state council", again)[0] == "国务院"
