"""What the model reads: each passage trimmed to a window around its evidence, English
aids for English questions (names in pinyin, 亿/万 amounts in English), and the chat.

`build_messages` and `retry_messages` assemble the prompt texts of prompts.py.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.answering.checking import CN_MAGNITUDE_RE, MAGNITUDE, MAGNITUDE_RE, cn_amount
from rag.answering.prompts import (
    EXAMPLE_PASSAGES,
    EXAMPLES,
    QUESTION_LABEL,
    REMINDER,
    RETRY,
    SYSTEM,
    reason_text,
)
from rag.guard import quote_passage
from rag.lang import known_lang, to_script
from rag.text import is_cjk, is_person_name, posseg
from rag.types import Hit

MAX_PASSAGES = 3
PASSAGE_CHARS = 220

def trim_passage(text: str, limit: int = PASSAGE_CHARS) -> str:
    """At most `limit` characters, cut at a sentence end when one is near the limit."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(p) for p in "。；;！？!?")
    if cut >= int(limit * 0.6):
        return head[: cut + 1]
    return head.rstrip() + "…"


def passage_window(text: str, spans: Sequence[tuple[int, int]], limit: int = PASSAGE_CHARS) -> str:
    """What the model reads of a passage: the evidence sentences (`spans`, offsets into
    `text`), then the sentences after them, then those before, while within `limit`
    characters. A 1.5B model answers from what is in front of it: a window that starts at
    the answer beats the chunk's first 220 characters, and a short prompt is a fast one."""
    from rag.chunking import split_sentences

    if not spans:
        return trim_passage(text, limit)
    sents = split_sentences(text)
    a0, b0 = min(a for a, _ in spans), max(b for _, b in spans)
    inside = [i for i, (a, b) in enumerate(sents) if b > a0 and a < b0]
    if not inside:
        return trim_passage(text, limit)
    lo, hi = inside[0], inside[-1]
    size = sents[hi][1] - sents[lo][0]
    while hi + 1 < len(sents) and size + (sents[hi + 1][1] - sents[hi][1]) <= limit:
        hi += 1
        size = sents[hi][1] - sents[lo][0]
    while lo > 0 and size + (sents[lo][0] - sents[lo - 1][0]) <= limit:
        lo -= 1
        size = sents[hi][1] - sents[lo][0]
    return " ".join(text[sents[lo][0]:sents[hi][1]].split())


def _english_amount(value: float) -> str:
    for size, word in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million")):
        if value >= size:
            return f"{value / size:,.3f}".rstrip("0").rstrip(".") + f" {word}"
    return f"{value:,.0f}"



def english_magnitudes(text: str) -> str:
    """"1540亿美元" -> "154 billion美元", "百亿元" -> "10 billion元". The small model renders
    亿 as "billion" digit for digit (1540 billion, 百亿 as "100 billion"), and given both forms
    it mixed them ("$436 billion (43.6 billion)"), so the English form replaces the Chinese
    one. Done by hand: no library says 亿 in English."""

    def repl(m: re.Match[str]) -> str:
        value = float(m.group(1)) * MAGNITUDE[m.group(2)]
        return f" {_english_amount(value)} "

    def repl_cn(m: re.Match[str]) -> str:
        value = cn_amount(m)
        return f" {_english_amount(value)} " if value else m.group(0)

    return CN_MAGNITUDE_RE.sub(repl_cn, MAGNITUDE_RE.sub(repl, text))


def _name_pieces(text: str) -> list[tuple[str, list[str] | None]]:
    """jieba's words of `text`, each with its pinyin syllables when it is a rare person's
    name (tags nr/nrfg), else None."""
    from pypinyin import lazy_pinyin

    out: list[tuple[str, list[str] | None]] = []
    for w in posseg().cut(text):
        word = w.word
        syl = None
        if (w.flag in ("nr", "nrfg") and 2 <= len(word) <= 4 and all(is_cjk(c) for c in word)
                and is_person_name(word, w.flag)):
            syl = lazy_pinyin(word)
        out.append((word, syl))
    return out


def _roman(syl: list[str]) -> str:
    return f"{syl[0].capitalize()} {''.join(syl[1:]).capitalize()}"  # surname, given name


def english_names(text: str) -> str:
    """"陈刚" -> "Chen Gang" for people's names (jieba's nr tag), in pypinyin's
    romanisation: the model otherwise invents a transliteration ("Chen Guangming"); given
    both forms it wrote both ("Chen Gang (Chen Gang)")."""
    return "".join(f" {_roman(syl)} " if syl else word for word, syl in _name_pieces(text))


def names_as_written(english: str, source: str) -> str:
    """"began at En Boli" -> "began at En Boli (恩波利)": each name the model read romanised
    (`english_names` of `source`) is followed, at its first mention in `english`, by the
    name as the source writes it (simplified). Nobody can read a transliteration back from
    its pinyin (恩波利 is Empoli), but the written name can be looked up and checked against
    the cited passage. The romanisation is matched with or without spaces and hyphens
    between its syllables (En Boli, Enboli, En-boli)."""
    for word, syl in _name_pieces(english_magnitudes(to_script(source, "zh-Hans"))):
        if not syl or word in english:
            continue
        pattern = r"[\s\-]?".join(re.escape(x) for x in syl)
        english = re.sub(rf"(?<![A-Za-z])({pattern})(?![A-Za-z])", lambda m: f"{m.group(1)} ({word})",
                         english, count=1, flags=re.IGNORECASE)
    return english


def passage_for(lang: str, text: str) -> str:
    """The passage as shown to the model: for English questions, names and magnitudes
    carry their English forms."""
    return english_names(english_magnitudes(to_script(text, "zh-Hans"))) if lang == "en" else text


def _user_message(question: str, passages: Sequence[str], lang: str) -> str:
    lines = [f"{QUESTION_LABEL[lang]}: {question.strip()}", "", "<passages>"]
    lines += [f"[{i}] {p}" for i, p in enumerate(passages, 1)]
    lines += ["</passages>", "", REMINDER[lang]]
    return "\n".join(lines)


def build_messages(question: str, hits: Sequence[Hit], lang: str,
                   passages: Sequence[str] | None = None) -> list[Any]:
    """ChatMessages for one grounded answer: system (in `lang`), worked examples (English),
    then the question, the numbered passages and a one-line reminder. `passages` are the
    texts shown for `hits` (default: each chunk trimmed to PASSAGE_CHARS)."""
    from llama_index.core.llms import ChatMessage

    lang = known_lang(lang)
    messages = [ChatMessage(role="system", content=SYSTEM[lang])]
    examples = EXAMPLES.get(lang) or [(to_script(q, lang), to_script(a, lang)) for q, a in EXAMPLES["zh-Hans"]]
    for q, a in examples:
        messages.append(ChatMessage(role="user", content=_user_message(q, EXAMPLE_PASSAGES, lang)))
        messages.append(ChatMessage(role="assistant", content=a))
    if passages is None:
        passages = [trim_passage(h.chunk.text) for h in hits]
    # quoted, never obeyed: control markup defused, instruction-like sentences cut (rag/guard.py)
    passages = [quote_passage(p) for p in passages]
    messages.append(ChatMessage(role="user", content=_user_message(question, passages, lang)))
    return messages


def retry_messages(messages: list[Any], bad: str, reason: str, lang: str, k: int) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    lang = known_lang(lang)
    follow = RETRY[lang].format(reason=reason_text(reason, lang), k=k)
    return [*messages, ChatMessage(role="assistant", content=bad), ChatMessage(role="user", content=follow)]
