"""Query translation for English questions (rag.answering.translate_query), fusing query variants
(rag.retrieval.fuse_hit_lists / Searcher.search(variants=...)) and its wiring in the Assistant."""
from __future__ import annotations

from rag.answering.flow import LLMAnswerer
from rag.answering.prompts import TRANSLATE_EXAMPLES
from rag.answering.translate import translate_query
from rag.retrieval import fuse_hit_lists
from rag.types import Chunk, Hit
from tests.fakes_llm import BrokenLLM, FakeExtractive, ScriptedLLM

Q = "Who founded the company in 1998?"


def test_translation_is_one_short_greedy_line_with_worked_examples():
    llm = ScriptedLLM(["这家公司是谁在1998年创立的？"])
    assert translate_query(Q, llm) == "这家公司是谁在1998年创立的？"
    kwargs = llm._kwargs[0]
    assert kwargs["max_tokens"] == 48 and kwargs["temperature"] == 0.0 and "\n" in kwargs["stop"]
    prompt = llm.prompts[0]
    assert all(en in prompt and zh in prompt for en, zh in TRANSLATE_EXAMPLES)
    assert prompt.index(Q) > max(prompt.index(zh) for _, zh in TRANSLATE_EXAMPLES)  # the question comes last


def test_translation_keeps_the_first_line_in_simplified_script_or_gives_none():
    assert translate_query(Q, ScriptedLLM(["這家公司是誰創立的？\n它是……"])) == "这家公司是谁创立的？"
    assert translate_query(Q, ScriptedLLM(["The company was founded by Li."])) is None
    assert translate_query(Q, None) is None and translate_query("  ", ScriptedLLM([])) is None
    assert translate_query(Q, BrokenLLM([])) is None


def test_answerer_translates_on_its_own_translator_built_once():
    built = []

    def factory():
        built.append(1)
        return ScriptedLLM(["公司是谁创立的？", "公司在哪里？"])

    answerer = LLMAnswerer(ScriptedLLM([]), FakeExtractive(), translator_factory=factory)
    assert answerer.translate(Q) == "公司是谁创立的？"
    assert answerer.translate("Where is the company?") == "公司在哪里？"
    assert len(built) == 1 and answerer.llm.calls == 0  # the answering model is not used


def _hits(*pairs):
    return [Hit(Chunk(id=cid, source="d.txt", text=cid, start=0, end=1), score, rank)
            for rank, (cid, score) in enumerate(pairs, 1)]


def test_fused_variants_rank_a_chunk_both_lists_find_first():
    english = _hits(("x", 0.9), ("gold", 0.8), ("y", 0.1))
    chinese = _hits(("gold", 0.95), ("z", 0.5))
    fused = fuse_hit_lists([english, chinese], 3)
    assert [h.chunk.id for h in fused] == ["gold", "x", "z"]
    assert [h.rank for h in fused] == [1, 2, 3]
    assert fused[0].score > fused[1].score
    weighted = fuse_hit_lists([english, chinese], 2, [1.0, 0.1])
    assert weighted[0].chunk.id == "x"


class _RecordingSearcher:
    def __init__(self):
        self.calls = []

    def search(self, question, k, variants=None):
        self.calls.append((question, variants))
        return []


def _assistant(settings_for, fake_embedder, **kw):
    from rag.assistant import Assistant

    a = Assistant(settings_for(llm="extractive", **kw), fake_embedder)
    a._searcher = _RecordingSearcher()
    return a


def test_assistant_searches_english_questions_with_the_translation(settings_for, fake_embedder):
    a = _assistant(settings_for, fake_embedder)
    answerer = LLMAnswerer(ScriptedLLM([]), FakeExtractive(), translator=ScriptedLLM(["公司是谁创立的？"]))
    a._prepare(Q, None, 3, answerer)
    a._prepare("公司是谁创立的？", None, 3, answerer)  # Chinese: no translation call
    assert a._searcher.calls == [(Q, ["公司是谁创立的？"]), ("公司是谁创立的？", [])]


def test_no_translation_when_off_or_extractive(settings_for, fake_embedder):
    a = _assistant(settings_for, fake_embedder, query_translation="off")
    translator = ScriptedLLM([])
    a._prepare(Q, None, 3, LLMAnswerer(ScriptedLLM([]), FakeExtractive(), translator=translator))
    b = _assistant(settings_for, fake_embedder)
    b._prepare(Q, None, 3, FakeExtractive())
    assert a._searcher.calls == [(Q, [])] and b._searcher.calls == [(Q, [])] and translator.calls == 0


def test_searcher_fuses_variants(settings_for, fake_embedder):
    from rag.assistant import Assistant

    a = Assistant(settings_for(llm="extractive"), fake_embedder)
    a.index()
    s = a.searcher
    plain = s.search("What did Shanghai announce in August?", 3)
    fused = s.search("What did Shanghai announce in August?", 3, variants=["上海8月发布了什么？"])
    alone = s.search("上海8月发布了什么？", 3)
    assert len(fused) == 3 and [h.rank for h in fused] == [1, 2, 3]
    assert fused[0].chunk.id in {h.chunk.id for h in plain + alone}
    assert "上海市加快推動" in alone[0].chunk.text and "上海市加快推動" in fused[0].chunk.text
    # an empty or repeated variant is the plain search
    assert [h.chunk.id for h in s.search("What did Shanghai announce in August?", 3, variants=["", " "])] == \
        [h.chunk.id for h in plain]


def test_fused_scores_stay_on_the_original_querys_scale():
    english = _hits(("x", 0.8), ("gold", 0.6))
    chinese = _hits(("gold", 0.9), ("z", 0.5))
    fused = fuse_hit_lists([english, chinese], 3)
    assert 0 < fused[-1].score <= fused[0].score <= 0.8  # the page shows scores as decimals


ENDO = "How many works did Minoru Endō write?"


def _searcher_with(settings_for, fake_embedder, workdir, texts: dict[str, str]):
    from rag.assistant import Assistant

    for name, text in texts.items():
        (workdir / "seeds" / name).write_text(text, encoding="utf-8")
    a = Assistant(settings_for(llm="extractive"), fake_embedder)
    a.index()
    return a.searcher


def test_bridge_names_are_the_documents_readings_of_the_questions_names():
    from rag.crossling import CorpusVocab, bridge_names

    vocab = CorpusVocab.from_texts(["远藤实（），日本作曲家，曾写下五千多首作品。", "东京是日本的首都。"])
    assert bridge_names(ENDO, vocab) == [["远藤实"]]
    assert bridge_names("How many works did the composer write?", vocab) == []


def test_a_variant_that_misses_a_name_the_bridge_read_is_not_trusted(settings_for, fake_embedder, workdir):
    s = _searcher_with(settings_for, fake_embedder, workdir, {
        "endo.md": "# 远藤实\n\n远藤实（），日本作曲家，曾写下五千多首作品。\n",
        "other.md": "# 作曲家\n\n山田耕筰是一位作曲家，他写了很多作品，作品多达三千首。\n",
    })
    assert s.variant_weight(ENDO, "远藤实写了多少作品？") == 1.0
    assert s.variant_weight(ENDO, "远藤稔写了多少作品？") == 0.0  # the model's own rendering
    assert s.variant_weight("How many works did the composer write?", "作曲家写了多少作品？") == 1.0  # no name
    assert s.variant_weight("远藤实写了多少作品？", "whatever") == 1.0  # not an English question
    plain = [h.chunk.id for h in s.search(ENDO, 3)]
    assert [h.chunk.id for h in s.search(ENDO, 3, variants=["远藤稔写了多少作品？"])] == plain
    trusted = s.search(ENDO, 3, variants=["远藤实写了多少作品？"])
    assert "远藤实" in trusted[0].chunk.text
