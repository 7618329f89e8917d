"""The coordination bonus of the hybrid search (rag/retrieval.py): among the top candidates,
the chunk holding more of a Chinese question's distinct terms moves up."""
from __future__ import annotations

import pytest

import rag.retrieval as retrieval
from rag.indexer import index_folder
from rag.retrieval import Searcher, coord, coord_terms
from rag.store import ChunkStore


def test_coord_counts_characters_not_only_tokens():
    terms = [("元", 4.0), ("详", 4.0), ("封", 4.0), ("北海", 4.0)]
    # the heading holds 元详 as one token: its characters still count
    assert coord(terms, "元详", "太和九年（485年）封北海王，加侍中。") == 1.0
    assert coord(terms, "元详", "元详原本的北海王爵位") == 0.75
    # traditional text is folded; Latin terms and numbers count as whole words only
    assert coord([("资讯网", 1.0), ("2004", 1.0)], "", "2004年，全球資訊網出現") == 1.0
    assert coord([("2004", 1.0)], "", "12004年") == 0.0
    assert coord([("ai", 1.0)], "", "said") == 0.0
    assert coord([("ai", 1.0)], "", "AI产业") == 1.0


def test_coord_terms_drop_what_no_document_holds():
    df = {"越南": 3, "科举": 2, "于何": 0}
    idf = {"越南": 1.5, "科举": 2.0}
    terms = coord_terms(["越南", "科举", "于何", "越南"], lambda t: idf[t] if df[t] else None)
    assert terms == [("越南", 1.5), ("科举", 2.0)]


DOCS = {
    # holds two of the question's terms, the commoner ones many times (BM25 and the
    # bigram fake embedder both like it)
    "a.md": "# 科举\n\n越南科举历史悠久，科举影响深远，科举考试内容丰富，科举与中国科举相似。",
    # holds all of them once: the answer
    "b.md": "# 汉字\n\n汉字使用渐少，1919年越南科举废除，改用拉丁字母书写。",
    "f0.md": "# 天气\n\n今天的天气很好，适合出门散步。",
    "f1.md": "# 河流\n\n长江是中国最长的河流，流经多个省份。",
    "f2.md": "# 饮食\n\n米饭和面条是常见的主食。",
    "f3.md": "# 建筑\n\n这座桥建于明朝，至今仍在使用。",
    "f4.md": "# 音乐\n\n他创作了许多流行歌曲。",
    "f5.md": "# 中国\n\n中国是一个历史悠久的国家。",
}


def _searcher_over(docs: dict[str, str], tmp_path, embedder) -> Searcher:
    from rag.settings import Settings

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name, text in docs.items():
        (seeds / name).write_text(text, encoding="utf-8")
    # the bonuses as they rank, without the sentence rerank after them (tests/test_sentence_rerank.py):
    # over the fake embedder's bigram vectors, its sentence cosines would decide these near ties
    s = Settings(seeds_dir=seeds, index_dir=tmp_path / "index", sentence_weight=0.0)
    index_folder(s, embedder)
    return Searcher(s, ChunkStore.open(s.index_dir), embedder)


@pytest.fixture
def searcher(tmp_path, fake_embedder):
    return _searcher_over(DOCS, tmp_path, fake_embedder)


def test_chunk_holding_all_question_terms_moves_above_one_repeating_a_few(searcher, monkeypatch):
    question = "越南的科举于何时废除？"
    assert searcher.search(question, 3)[0].chunk.source == "b.md"
    monkeypatch.setattr(searcher.settings, "coord_weight", 0.0)  # without the bonus the repeater wins
    assert searcher.search(question, 3)[0].chunk.source == "a.md"


def test_a_longer_list_starts_with_the_shorter_one(searcher):
    # the bonus used to run only for k < coord_depth (20): a search for 30 hits, as the
    # gate's fit script makes, ranked the repeater first while a search for 3 did not
    question = "越南的科举于何时废除？"
    short = [h.chunk.id for h in searcher.search(question, 3)]
    for k in (searcher.settings.coord_depth, 30):
        assert [h.chunk.id for h in searcher.search(question, k)][:3] == short
    assert searcher.search(question, 30)[0].chunk.source == "b.md"


def test_a_passage_only_the_keyword_list_found_gets_its_own_cosine(searcher, monkeypatch):
    """With one dense candidate, the other hits come from the keyword list alone: their
    dense similarity is read from their stored vectors (the gate judges them by it), the
    same cosine a dense search gives them."""
    import numpy as np

    question = "越南的科举于何时废除？"
    full = {h.chunk.id: h.dense_score for h in searcher.search(question, 3)}
    monkeypatch.setattr(searcher.settings, "dense_candidates", 1)
    hits = searcher.search(question, 3)
    # one found by the dense search, the others (a.md, b.md hold the terms) by keywords only
    assert len(hits) >= 2 and all(h.dense_score is not None for h in hits)
    for h in hits:
        assert h.dense_score == pytest.approx(full.get(h.chunk.id, h.dense_score), abs=1e-4)
    q = searcher.embedder.embed_queries([question])[0]
    v = searcher.store.vectors([hits[-1].chunk.id])[hits[-1].chunk.id]
    assert hits[-1].dense_score == pytest.approx(float(np.dot(q, v)), abs=1e-5)


def test_stored_vectors_that_cannot_be_read_leave_the_search_working(searcher, monkeypatch):
    """An index run in another process can replace the chunks a search found (Chroma then
    raises "Error finding id"): the hits keep no cosine rather than the search failing."""
    monkeypatch.setattr(searcher.settings, "dense_candidates", 1)

    def gone(ids):
        raise RuntimeError("Error executing plan: Internal error: Error finding id")

    monkeypatch.setattr(searcher.store, "vectors", gone)
    hits = searcher.search("越南的科举于何时废除？", 3)
    assert len(hits) >= 2 and any(h.dense_score is None for h in hits)


NAMED_DOCS = {
    # on the question's topic many times over, about another city
    "a.md": "# 生态\n\n成都建设人工智能产业生态示范区，产业生态完善，生态协同发展，人工智能产业集聚，产业生态领先。",
    # the one the question names
    "b.md": "# 城市\n\n武汉建设产业创新中心，完善人工智能产业生态。",
    **{k: v for k, v in DOCS.items() if k.startswith("f")},
}


@pytest.fixture
def named_searcher(tmp_path, fake_embedder):
    return _searcher_over(NAMED_DOCS, tmp_path, fake_embedder)


def test_an_english_question_prefers_the_passage_holding_the_place_it_names(named_searcher, monkeypatch):
    # "wuhan" (lower-case, as people type) is a proper noun of the dictionary: the bridge's
    # surest term; a passage on the topic that lacks it does not come first
    question = "what is wuhan building to strengthen its AI industry ecosystem"
    assert named_searcher.search(question, 3)[0].chunk.source == "b.md"
    monkeypatch.setattr(named_searcher.settings, "coord_weight", 0.0)
    assert named_searcher.search(question, 3)[0].chunk.source == "a.md"


def test_proximity_counts_neighbouring_words_held_side_by_side():
    from rag.retrieval import proximity

    groups = [(["管理", "管辖"], 2.0), (["区域", "地方"], 1.0), (["萨克森"], 3.0)]
    # each pair weighs as its lighter word (1.0 and 1.0): 管理 and 区域 side by side, 区域 and
    # 萨克森 one character apart in the other order
    assert proximity(groups, "萨克森的区域，无管理区域") == 1.0
    assert proximity(groups, "下萨克森州共有25个无管理区域") == 0.5
    assert proximity([(["管理"], 3.0), (["区域"], 1.0), (["萨克森"], 2.0)], "萨克森州的区域管理") == 1.0
    # held in one chunk but apart: nothing; a term inside its own longer neighbour: nothing
    assert proximity(groups, "管辖范围很大。这些区域以北是萨克森") == 0.0
    assert proximity([(["区域"], 1.0), (["区"], 1.0)], "区域") == 0.0
    # either order, Latin words as whole words only
    assert proximity([(["battle"], 1.0), (["sekigahara"], 1.0)], "sekigahara battle") == 1.0
    assert proximity([(["war"], 1.0), (["zone"], 1.0)], "warzone") == 0.0
    assert proximity(groups[:1], "管理区域") == 0.0


# In each collection a.md holds the question's words many times, never side by side, and b.md
# holds them once, side by side: the answer.
PHRASE_DOCS = {
    "a.md": "# 规划\n\n区域规划由管辖部门负责。这个区域很大，由多个部门共同管辖，目前发展很快。区域规划完善，由省里统一管辖。",
    "b.md": "# 行政\n\n全州共有25个无管理区域。",
    **{k: v for k, v in DOCS.items() if k.startswith("f")},
}
ENGLISH_DOCS = {
    "a.md": "# Fund\n\nThe fund pays for training in every skill. The fund grows; new skills are "
            "taught, each skill is tested, and the fund is audited. Skills matter to the fund.",
    "b.md": "# Budget\n\nThe council's budget for the year, set in March after a long debate among its "
            "members, gives the skills fund 2 million pounds; the rest goes to roads, parks and libraries.",
    "f0.md": "# Weather\n\nIt rained all week in the harbour town.",
    "f1.md": "# River\n\nThe river runs through three counties to the sea.",
    "f2.md": "# Food\n\nBread and soup are served at noon.",
}


@pytest.mark.parametrize("docs,question", [
    (PHRASE_DOCS, "how many unadministered areas are there"),  # English over Chinese text
    (ENGLISH_DOCS, "技能基金有多少钱？"),  # Chinese over English text
], ids=["english-question", "chinese-question-english-text"])
def test_a_question_read_through_the_dictionary_prefers_the_passage_saying_its_phrase(
        docs, question, tmp_path, fake_embedder, monkeypatch):
    searcher = _searcher_over(docs, tmp_path, fake_embedder)
    assert searcher.search(question, 3)[0].chunk.source == "b.md"
    monkeypatch.setattr(searcher.settings, "proximity_weight", 0.0)
    assert searcher.search(question, 3)[0].chunk.source == "a.md"


def test_an_english_question_is_read_through_the_dictionary_once(named_searcher, monkeypatch):
    # the search reads its groups and its names, and the gate its groups again: one reading
    # per question and index (a Japanese name reading scans every term that could start it)
    import rag.crossling as crossling
    from rag.answering.gate import AnswerabilityGate

    reads, names = [], []
    real_read, real_name = crossling._bridge_groups_sourced, crossling._read_name
    monkeypatch.setattr(crossling, "_bridge_groups_sourced", lambda q, v: reads.append(q) or real_read(q, v))
    monkeypatch.setattr(crossling, "_read_name",
                        lambda t, i, v: names.append((tuple(t[i:i + 3]), i > 0)) or real_name(t, i, v))
    question = "What is Wuhan building to strengthen its AI industry ecosystem?"
    hits = named_searcher.search(question, 3)
    assert hits[0].chunk.source == "b.md"
    gate = AnswerabilityGate(corpus=named_searcher)
    gate.check(question, hits)
    assert reads.count(question) == 1
    assert names and len(names) == len(set(names))  # each word read as a name once


def test_an_english_questions_latin_name_counts_only_as_a_whole_word(tmp_path, fake_embedder, monkeypatch):
    # "EU" reads as 欧洲联盟 and as the abbreviation b.md keeps; a.md holds "eu" only inside
    # "Europe" and "neutral", so it names nothing the question names and takes no name bonus
    docs = {
        "a.md": "# 生态\n\n人工智能产业生态报告：Europe and the neutral zone，人工智能产业生态完善，产业生态协同发展。",
        "b.md": "# 城市\n\nEU宣布建设产业创新中心，完善人工智能产业生态。",
        **{k: v for k, v in DOCS.items() if k.startswith("f")},
    }
    searcher = _searcher_over(docs, tmp_path, fake_embedder)
    question = "What did the EU announce to strengthen the AI industry ecosystem?"

    def scores():
        return {h.chunk.source: h.score for h in searcher.search(question, 3)}

    with_bonus = scores()
    monkeypatch.setattr(searcher.settings, "coord_weight", 0.0)
    without = scores()
    assert with_bonus["b.md"] > without["b.md"] + 0.1
    assert with_bonus["a.md"] == pytest.approx(without["a.md"])
