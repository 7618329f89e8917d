"""The extractive answerer's gate (`support`): which passages hold what a question asks for.
Fast: jieba and OpenCC only, passages built by hand."""
from __future__ import annotations

from fakes_llm import hit

from rag.answer import ExtractiveAnswerer

SICHUAN = "四川則是提出在成都建設“諸葛空間”AI產業生態示范區，重點發力大模型和機器人，建設機器人中試線。"
ANHUI = "安徽立足新能源汽車產業發展基礎，建設超級工廠，助力汽車、新能源汽車產量均居全國第一。"
ANHUI_NO_RANK = "安徽立足新能源汽車產業發展基礎，建設超級工廠，推動汽車產業發展。"


def test_a_generic_place_word_is_not_a_name_the_passage_must_contain():
    ex = ExtractiveAnswerer()
    q = "四川打算在哪个城市建“诸葛空间”AI产业生态示范区?"
    assert ["城市"] not in ex.needs(q).entities
    assert ex.support(q, [hit(SICHUAN, 1)]).passing == [0]
    # a real place the passage lacks still fails it
    assert ex.support("广东打算在哪个城市建“诸葛空间”AI产业生态示范区?", [hit(SICHUAN, 1)]).passing == []


def test_a_rank_answers_a_which_place_question():
    ex = ExtractiveAnswerer()
    q = "安徽的汽車和新能源汽車產量在全國排第幾?"
    assert ex.support(q, [hit(ANHUI, 1)]).passing == [0]
    assert ex.support(q, [hit(ANHUI_NO_RANK, 1)]).passing == []
