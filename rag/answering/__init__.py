"""Answering: from a question and its retrieved passages to a cited Answer or a refusal.

gate.py decides whether the passages answer (`AnswerabilityGate.check -> Support`, the
same decision for both answerers); judge.py lets the LLM read the gate's evidence and
refuse what it does not state (LLM mode); extractive.py answers with the passages' own
sentences; the LLM answerer is flow.py (the streaming flow) over prompts.py (all text
the model reads), passages.py (what it reads of each passage) and checking.py (what its
reply must pass); translate.py renders English questions in Chinese for retrieval.
"""
from __future__ import annotations

from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.flow import Answerer, LLMAnswerer, make_answerer
from rag.answering.gate import AnswerabilityGate, Question, Support
from rag.answering.judge import AnswerJudge, Judgement
from rag.answering.prompts import REFUSALS, refusal_text
from rag.answering.translate import translate_query

__all__ = [
    "AnswerJudge",
    "AnswerabilityGate",
    "Answerer",
    "ExtractiveAnswerer",
    "Judgement",
    "LLMAnswerer",
    "Question",
    "REFUSALS",
    "Support",
    "make_answerer",
    "refusal_text",
    "translate_query",
]
