"""Multi-turn: rewrite a follow-up ("And Beijing?", "那北京呢？") into a standalone question.

`standalone_question(question, history, llm)`:

* No history, or a question that does not look like a follow-up -> unchanged
  (no LLM call, no latency).
* With an LLM: one short call rewrites it (few-shot prompt, in the question's
  language); the rewrite is accepted only if it is non-empty, in the same
  language, of sane length, and keeps the follow-up's new entity. Otherwise,
  or without an LLM, the heuristic below is used.
* Heuristic: an elliptical follow-up ("And Beijing?", "What about in June?",
  "那北京呢？", "6月呢？") replaces the entity of the same kind (place/name,
  month, year) in the previous user question; a pronoun ("its", "there", "它",
  "那里") is replaced by the previous question's entity; anything else is
  merged with the previous question so retrieval still sees the topic.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from rag.lang import detect_lang
from rag.text import posseg, without_possessive

_EN_LEAD = re.compile(
    r"^\s*(?:and\s+what\s+about|and\s+how\s+about|what\s+about|how\s+about|and\s+for|and\s+in|"
    r"what\s+of|and|also|same\s+for|same\s+question\s+for)\b[\s,]*",
    re.IGNORECASE,
)
_ZH_LEAD = re.compile(r"^\s*(?:那么|那麼|那|还有|還有|另外|再问|再問|和|跟|以及)\s*")
_ZH_TAIL = re.compile(r"(?:呢|吗|嗎|怎么样|怎麼樣|如何)?\s*[?？。!！]*\s*$")
_MONTHS = (
    "january february march april may june july august september october november december".split()
)
_EN_MONTH = re.compile(r"\b(" + "|".join(m.capitalize() for m in _MONTHS) + r")\b", re.IGNORECASE)
_EN_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_ZH_MONTH = re.compile(r"(?:\d{1,2}|[一二三四五六七八九十]{1,3})月(?:份)?")
_ZH_YEAR = re.compile(r"\d{4}年")
_EN_PRONOUN = re.compile(r"\b(its|their|it|they|them|there|this city|that city|this province)\b", re.IGNORECASE)
_ZH_PRONOUN = re.compile(r"(它们|它們|他们|他們|该市|該市|该省|該省|那里|那裡|那儿|這裡|这里|它|其)")


@lru_cache(maxsize=1)
def _question_words() -> frozenset[str]:
    """English words that ask or frame a question (rag/data/question_words.json, the
    gate's language facts): a capitalised one starts a question, not a name."""
    from rag.answering.gate import question_words

    facts = question_words()
    asking = {cue for by_lang in facts["types"].values() for cue in by_lang["en"] if " " not in cue}
    return frozenset(asking | set(facts["frame"]["en"]))


def _is_chinese(text: str) -> bool:
    return detect_lang(text) != "en"


def _previous_question(history: Sequence[tuple[str, str]]) -> str:
    """The last user question made standalone (follow-ups in the history resolved in order)."""
    resolved = ""
    for user, _ in history:
        if user and user.strip():
            resolved = _rewrite(user.strip(), resolved) if resolved else user.strip()
    return resolved


def elliptical_part(question: str) -> str | None:
    """The new entity of an elliptical follow-up ("And Beijing?" -> "Beijing"), else None."""
    q = question.strip()
    if _is_chinese(q):
        core = _ZH_TAIL.sub("", _ZH_LEAD.sub("", q)).strip()
        led = bool(_ZH_LEAD.match(q)) or bool(re.search(r"呢\s*[?？]?\s*$", q))
        if core and led and len(core) <= 8:
            return core
        return None
    m = _EN_LEAD.match(q)
    core = _EN_LEAD.sub("", q).strip().rstrip("?？.!").strip()
    if m and core and len(core.split()) <= 4:
        return core
    if not m and core and len(core.split()) <= 2 and core[:1].isupper() and q.rstrip().endswith("?"):
        return core  # "Beijing?"
    return None


def looks_like_followup(question: str) -> bool:
    q = question.strip()
    if elliptical_part(q) is not None:
        return True
    if _is_chinese(q):
        return bool(_ZH_PRONOUN.search(q)) or len(q) <= 4
    return bool(_EN_PRONOUN.search(q)) or len(q.split()) <= 2


# --------------------------------------------------------------------------- heuristic


def _en_names(text: str) -> list[tuple[int, int]]:
    """Spans of capitalised words/phrases that are not the first word, months or question words."""
    spans = []
    for m in re.finditer(r"[A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*", text):
        words = m.group(0).split()
        start = m.start()
        while words and (words[0].lower() in _question_words() or words[0].lower() in _MONTHS):
            start += len(words[0]) + 1
            words = words[1:]
        while words and words[-1].lower() in _MONTHS:
            words = words[:-1]
        if not words or all(w.isupper() for w in words):  # acronyms (AI, PPT) are not antecedents
            continue
        name = without_possessive(" ".join(words))
        spans.append((start, start + len(name)))
    return spans


def _zh_names(text: str) -> list[tuple[int, int]]:
    """Spans of place/person/organisation names (jieba POS ns/nr/nt/nz), in order."""
    spans, pos = [], 0
    for word, flag in posseg().lcut(text):
        if flag[:2] in ("ns", "nr", "nt", "nz") and len(word) >= 2:
            spans.append((pos, pos + len(word)))
        pos += len(word)
    return spans


def _kind(entity: str, zh: bool) -> str:
    if zh:
        if _ZH_MONTH.fullmatch(entity):
            return "month"
        if _ZH_YEAR.fullmatch(entity) or re.fullmatch(r"\d{4}", entity):
            return "year"
        return "name"
    if entity.lower().removeprefix("in ").strip() in _MONTHS:
        return "month"
    if _EN_YEAR.fullmatch(entity.lower().removeprefix("in ").strip()):
        return "year"
    return "name"


def _spans_of_kind(text: str, kind: str, zh: bool) -> list[tuple[int, int]]:
    if kind == "month":
        rx = _ZH_MONTH if zh else _EN_MONTH
        return [m.span() for m in rx.finditer(text)]
    if kind == "year":
        rx = _ZH_YEAR if zh else _EN_YEAR
        return [m.span() for m in rx.finditer(text)]
    return _zh_names(text) if zh else _en_names(text)


def heuristic_standalone(question: str, history: Sequence[tuple[str, str]]) -> str:
    """Rule-based rewrite of a follow-up against the previous user question (no LLM)."""
    return _rewrite(question.strip(), _previous_question(history))


def _rewrite(q: str, previous: str) -> str:
    if not previous or not looks_like_followup(q):
        return q
    zh = _is_chinese(q) or (_is_chinese(previous) and not re.search(r"[A-Za-z]{3}", q))
    entity = elliptical_part(q)
    if entity is not None:
        if not zh:
            entity = re.sub(r"^(?:in|for|at)\s+", "", entity, flags=re.IGNORECASE)
        kind = _kind(entity, zh)
        spans = _spans_of_kind(previous, kind, zh)
        if spans:
            start, end = spans[0]
            if kind == "year" and zh and not entity.endswith("年"):
                entity += "年"
            return previous[:start] + entity + previous[end:]
        sep = "" if zh else " "
        return f"{previous.rstrip('?？。 ')}{sep}({entity}){'？' if zh else '?'}"
    # pronoun: substitute the previous question's first name
    names = _spans_of_kind(previous, "name", zh)
    if names:
        start, end = names[0]
        name = previous[start:end]
        if zh and _ZH_PRONOUN.search(q):
            return _ZH_PRONOUN.sub(name, q, count=1)
        if not zh and _EN_PRONOUN.search(q):
            def repl(m: re.Match[str]) -> str:
                word = m.group(0).lower()
                if word in ("its", "their"):
                    return f"{name}'s"
                if word == "there":
                    return f"in {name}"
                return name
            return _EN_PRONOUN.sub(repl, q, count=1)
    sep = "" if zh else " "
    return f"{previous.rstrip('?？。 ')}{'，' if zh else ';'}{sep}{q}"


# --------------------------------------------------------------------------- LLM rewrite

REWRITE_SYSTEM = (
    "Rewrite the user's follow-up question as a complete question that can be understood without "
    "the conversation. Keep the language of the follow-up (English stays English, Chinese stays "
    "Chinese). Output only the rewritten question.\n"
    "Example: previous question: What did Shanghai announce in August? follow-up: And Beijing? "
    "-> What did Beijing announce in August?\n"
    "Example: previous question: 上海8月发布了什么？ follow-up: 那北京呢？ -> 北京8月发布了什么？"
)


def _llm_rewrite(question: str, history: Sequence[tuple[str, str]], llm: Any) -> str | None:
    from llama_index.core.llms import ChatMessage

    previous = _previous_question(history)
    last_answer = ""
    for _, assistant in reversed(list(history)):
        if assistant:
            last_answer = " ".join(assistant.split())[:160]
            break
    user = f"previous question: {previous}\n"
    if last_answer:
        user += f"previous answer: {last_answer}\n"
    user += f"follow-up: {question.strip()}\nrewritten question:"
    try:
        out = llm.chat(
            [ChatMessage(role="system", content=REWRITE_SYSTEM), ChatMessage(role="user", content=user)],
            max_tokens=60,
        ).message.content or ""
    except Exception:
        return None
    out = out.strip().splitlines()[0].strip() if out.strip() else ""
    out = re.sub(r"^(?:rewritten question|question|->)\s*[:：]?\s*", "", out, flags=re.IGNORECASE)
    out = out.strip().strip("\"'“”「」").strip()
    return out or None


def _acceptable(rewrite: str | None, question: str, history: Sequence[tuple[str, str]]) -> bool:
    if not rewrite:
        return False
    if _is_chinese(rewrite) != _is_chinese(question):
        return False
    previous = _previous_question(history)
    if len(rewrite) > 2 * (len(previous) + len(question)) + 20:
        return False
    entity = elliptical_part(question)
    if entity is not None:
        entity = re.sub(r"^(?:in|for|at)\s+", "", entity, flags=re.IGNORECASE)
        if entity.lower() not in rewrite.lower():
            return False
    return True


def standalone_question(question: str, history: Sequence[tuple[str, str]] | None, llm: Any = None) -> str:
    """The question to retrieve with: `question` itself unless it is a follow-up."""
    q = (question or "").strip()
    history = list(history or [])
    if not history or not _previous_question(history) or not looks_like_followup(q):
        return q
    if llm is not None:
        rewrite = _llm_rewrite(q, history, llm)
        if _acceptable(rewrite, q, history):
            return rewrite  # type: ignore[return-value]
    return heuristic_standalone(q, history)
