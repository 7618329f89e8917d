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


def test_global_market_from_dictionary():
    terms = bridge_terms("How large was the global industrial AI market in 2024?")
    assert "市场" in terms or "市场规模" in terms
    assert "全球" in terms
    assert "2024" in terms  # years stay as digits


def test_multiword_phrases_from_dictionary():
    # phrases CC-CEDICT defines exactly (there is no hand glossary)
    assert bridge_terms("foreign trade")[0] == "外贸"
    assert bridge_terms("labor force")[0] == "劳动力"
    assert bridge_terms("the State Council")[0] == "国务院"
    assert bridge_terms("artificial intelligence") == ["人工智能"]


def test_common_word_ranked_first():
    assert bridge_terms("market")[0] == "市场"
    assert "制造" in bridge_terms("manufacturing")
    assert bridge_terms("risk")[0] == "风险"


def test_corpus_vocabulary_narrows_translations():
    """A translation the documents use beats a commoner one they do not."""
    from rag.crossling import CorpusVocab

    plain = bridge_terms("Which bureau was set up?")
    assert "公安局" not in plain
    vocab = CorpusVocab({"公安局", "设立", "人工智能"})
    narrowed = bridge_terms("Which bureau was set up?", vocab)
    assert "公安局" in narrowed
    assert all(t in vocab or t.isascii() for t in narrowed)
    # nothing in the vocabulary: the dictionary's own choice stays
    assert bridge_terms("market", CorpusVocab({"无关"}))[0] == "市场"


@pytest.mark.parametrize(
    "question,term",
    [
        ("Where was Feng Zuxun born?", "冯祖荀"),
        ("Who is Zhao Yiping?", "赵一萍"),
        ("How many people live in Shenzhen?", "深圳"),
        ("What did Wang Xiaoming write?", "王晓明"),
    ],
)
def test_names_in_pinyin_match_document_terms(question, term):
    from rag.crossling import CorpusVocab

    vocab = CorpusVocab({term, "出生", "人口", "写作", "其他词"})
    assert term in bridge_terms(question, vocab)


def test_pinyin_needs_a_capitalised_name():
    from rag.crossling import CorpusVocab

    vocab = CorpusVocab({"龙", "弄", "方法"})  # "long" reads as 龙, but is an English word here
    assert "龙" not in bridge_terms("How long was it?", vocab)


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
    # a CC-CEDICT proper noun is matched by its pinyin spelling
    assert bridge_terms(f"What did {name} do?")[0] == zh


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
