"""bench/llm_answer_parts.py: which part of an LLM answer holds the facts, per form of
answer (model's sentence kept, translation alone, extractive fallback), on made-up rows."""
from __future__ import annotations

from bench.llm_answer_parts import chinese_parts, english_parts, main

from rag.answering.prompts import LEAD_EN_QUOTED, QUOTE_LEAD, QUOTE_LEAD_ZH


def _row(rid, answer, lang="en", answerable=True, refused=False):
    return {"id": rid, "answer": answer, "lang": lang, "answerable": answerable, "refused": refused}


def test_english_parts_tell_the_sentence_from_the_translation():
    gold = {"a": [["Empoli", "恩波利"]], "b": [["1959"]], "c": [["Empoli", "恩波利"]], "d": [["x"]]}
    rows = [
        _row("a", f"He began at En Boli [1].{QUOTE_LEAD}He began at En Boli (恩波利) [1]."),
        _row("b", "He was born in 1959 [1]."),  # the model's answer rejected, translation alone
        _row("c", f"{LEAD_EN_QUOTED} 史巴列堤是于恩波利展开其教练生涯。[1]"),
        _row("d", "refused", refused=True),
        _row("a", "not asked", answerable=False),
    ]
    assert english_parts(rows, gold) == {
        "kept": 1, "kept_sentence_ok": 0, "kept_translation_ok": 1, "kept_ok": 1,
        "translated": 1, "translated_ok": 1, "extractive": 1, "extractive_ok": 1}


def test_chinese_parts_read_the_sentence_before_the_quote():
    gold = {"a": [["恩波利"]], "b": [["1959"]]}
    rows = [_row("a", f"他在恩波利开始[1]。{QUOTE_LEAD_ZH}史巴列堤是于恩波利展开其教练生涯。[1]", "zh-Hans"),
            _row("b", "根据文档：他于1959年出生。[1]", "zh-Hans")]
    rows[1]["facts_ok"] = True
    assert chinese_parts(rows, gold) == {"kept": 1, "kept_ok": 1, "replaced": 1, "replaced_ok": 1}


def test_main_needs_a_folder(capsys):
    assert main([]) == 2
    assert "llm_answer_parts.py" in capsys.readouterr().err
