"""Multi-turn rewriting: the heuristic without an LLM, and the LLM path with its validation."""
from __future__ import annotations

import pytest
from fakes_llm import BrokenLLM, ScriptedLLM

from rag.conversation import heuristic_standalone, looks_like_followup, standalone_question

SH_EN = [("What did Shanghai announce in August?", "Shanghai released a plan [1].")]
SH_ZH = [("上海8月发布了什么？", "上海推出了实施方案[1]。")]


@pytest.mark.parametrize(
    "history, question, expected",
    [
        (SH_EN, "And Beijing?", "What did Beijing announce in August?"),
        (SH_EN, "What about Zhejiang?", "What did Zhejiang announce in August?"),
        (SH_EN, "And in May?", "What did Shanghai announce in May?"),
        (SH_ZH, "那北京呢？", "北京8月发布了什么？"),
        (SH_ZH, "5月呢？", "上海5月发布了什么？"),
        ([("Where is the first city-level AI bureau?", "Wenzhou [1].")], "When was it unveiled?",
         "Where is the first city-level AI bureau; When was it unveiled?"),
        ([("What did Wenzhou set up in September?", "An AI bureau [1].")], "What is its population?",
         "What is Wenzhou's population?"),
        ([("温州9月成立了什么机构？", "人工智能局[1]。")], "它是全国第几个？", "温州是全国第几个？"),
    ],
)
def test_heuristic_rewrites(history, question, expected):
    assert heuristic_standalone(question, history) == expected
    assert standalone_question(question, history, None) == expected


def test_standalone_questions_are_left_alone_and_cost_no_llm_call():
    llm = ScriptedLLM([])
    q = "How large was the global industrial AI market in 2024?"
    assert standalone_question(q, SH_EN, llm) == q
    assert standalone_question("And Beijing?", [], llm) == "And Beijing?"
    assert not looks_like_followup("全国首个市级人工智能管理机构在哪里？")
    assert llm.calls == 0


def test_chained_follow_ups_resolve_against_the_last_standalone_question():
    history = SH_EN + [("And Beijing?", "Beijing released a plan [1].")]
    assert standalone_question("And Zhejiang?", history, None) == "What did Zhejiang announce in August?"


def test_llm_rewrite_is_used_when_valid():
    llm = ScriptedLLM(["What did Beijing announce in August 2025?"])
    assert standalone_question("And Beijing?", SH_EN, llm) == "What did Beijing announce in August 2025?"
    assert llm.calls == 1 and "And Beijing?" in llm.prompts[0] and "Shanghai" in llm.prompts[0]


@pytest.mark.parametrize(
    "reply",
    ["北京8月发布了什么？",  # wrong language for an English follow-up
     "What did Shanghai announce in August?",  # dropped the new entity
     ""],
)
def test_bad_llm_rewrite_falls_back_to_heuristic(reply):
    assert standalone_question("And Beijing?", SH_EN, ScriptedLLM([reply])) == "What did Beijing announce in August?"


def test_llm_failure_falls_back_to_heuristic():
    assert standalone_question("那北京呢？", SH_ZH, BrokenLLM([])) == "北京8月发布了什么？"
