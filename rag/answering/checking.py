"""Checking a model's reply against the passages it read: citations normalised and
attributed, language, numbers and amounts, and whether the cited passages hold it.

`check_answer` is the whole check (the flow is in flow.py's docstring); the other
functions are its parts, also used by the flow (is_refusal, from_evidence, numbers).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.answering.prompts import NO_ANSWER, REFUSAL, REFUSAL_PHRASES, SYSTEM, TRANSLATE_SYSTEM
from rag.guard import leaks_prompt
from rag.lang import known_lang, to_script
from rag.text import cjk_count, is_cjk, numerals_to_digits, stopwords
from rag.types import Citation, Hit

_CITE_RE = re.compile(
    r"[\[【［]\s*(?:passages?|段落|passage\s*no\.?)?\s*(\d+(?:\s*(?:[,，、;；]|and|&)\s*\d+)*)\s*[\]】］]",
    re.IGNORECASE,
)
_NUM_RE = re.compile(r"\d(?:[\d,，]*\d)?(?:\.\d+)?")
_LATIN_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*")


def normalize_citations(text: str) -> str:
    """[1, 2] / 【1】 / [Passage 1] -> [1][2] / [1] / [1]."""

    def repl(m: re.Match[str]) -> str:
        nums = re.findall(r"\d+", m.group(1))
        return "".join(f"[{n}]" for n in nums)

    return _CITE_RE.sub(repl, text)


def move_leading_citations(text: str) -> str:
    """"[1] Shanghai did X. More." -> "Shanghai did X [1]. More." (the model likes to lead with them)."""
    m = re.match(r"^\s*((?:\[\d+\]\s*)+)[:：,，]?\s*(\S.*)$", text, re.DOTALL)
    if not m:
        return text
    cites = re.sub(r"\s+", "", m.group(1))
    rest = m.group(2)
    end = re.search(r"[.。!！?？](?=\s|$)", rest)
    if end is None:
        return f"{rest.rstrip()} {cites}" if rest.isascii() else f"{rest.rstrip()}{cites}"
    i = end.start()
    sep = " " if rest[:i].isascii() else ""
    return f"{rest[:i].rstrip()}{sep}{cites}{rest[i:]}"


def cited_numbers(text: str) -> list[int]:
    """Passage numbers cited in `text` (normalised form), in order of first appearance."""
    seen: list[int] = []
    for m in re.finditer(r"\[(\d+)\]", text):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def strip_citations(text: str) -> str:
    return re.sub(r"\[\d+\]", " ", text)


def _content(text: str) -> str:
    """Letters, digits and CJK left once citations and punctuation are removed."""
    return "".join(ch for ch in strip_citations(text) if ch.isalnum())


def script_stats(text: str) -> tuple[int, int]:
    """(CJK characters, Latin letters) in text."""
    cjk = cjk_count(text)
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return cjk, latin


def language_ok(text: str, lang: str) -> bool:
    """Is the answer written in `lang`? English needs more Latin words than Chinese characters
    (a name in Chinese is tolerated, a copied Chinese sentence is not)."""
    body = strip_citations(text)
    if lang == "en":
        cjk, _ = script_stats(body)
        words = len(re.findall(r"[A-Za-z]{2,}", body))
        return words >= 3 and words > cjk
    cjk, latin = script_stats(body)
    return cjk >= 2 and cjk >= 0.5 * (cjk + latin)


def _canon_number(raw: str) -> str:
    digits = re.sub(r"[^\d]", "", raw).lstrip("0")
    return digits.rstrip("0") or "0"


def numbers(text: str) -> set[str]:
    """Numbers in text in a loose canonical form: 3,000 -> 3; 43.6 -> 436; 436 -> 436; 1540 -> 154.

    Loose on purpose: "43.6 billion" must match "436億", "3,000" must match "3000家".
    """
    text = unicodedata.normalize("NFKC", text)
    return {_canon_number(m.group(0)) for m in _NUM_RE.finditer(text)}


def numeral_numbers(text: str) -> set[str]:
    """Numbers written in Chinese numerals (五千余首 -> "5", 三万二千五百 -> "325"), in the
    canonical form of `numbers()`, read by cn2an. Not 1: 一 is part of too many words (一些,
    统一, 唯一), and "1" would let 10, 100 and 1000 through."""
    digits = numerals_to_digits(unicodedata.normalize("NFKC", text))
    if digits is None:
        return set()
    return (numbers(digits) - numbers(text)) - {"1"}


def _bigrams(text: str) -> set[str]:
    simp = to_script(text, "zh-Hans")
    out: set[str] = set()
    run = ""
    for ch in simp + " ":
        if is_cjk(ch):
            run += ch
        else:
            out.update(run[i : i + 2] for i in range(len(run) - 1))
            run = ""
    return out


def _latin_tokens(text: str) -> set[str]:
    return {w.lower() for w in _LATIN_RE.findall(text) if len(w) >= 2 and w.lower() not in stopwords("function")}


def _bridge(text: str) -> list[str]:
    """Simplified-Chinese terms for the English words of `text` (CC-CEDICT bridge of the core)."""
    try:
        from rag.crossling import bridge_terms
    except ImportError:  # pragma: no cover - the core ships it
        return []
    try:
        return [t for t in bridge_terms(text) if t]
    except Exception:  # the dictionary is an aid, never a reason to fail an answer
        return []


def evidence(sentence: str, passage: str, lang: str) -> int:
    """How much of `sentence` is found in `passage`: shared numbers (x2), Chinese bigrams,
    Latin words (AI, PPT), and for English the Chinese renderings of its words."""
    body = strip_citations(sentence)
    score = 2 * len(numbers(body) & numbers(passage))
    score += len(_bigrams(body) & _bigrams(passage))
    score += len(_latin_tokens(body) & _latin_tokens(passage))
    if lang == "en":
        simp = to_script(passage, "zh-Hans")
        score += sum(1 for t in dict.fromkeys(_bridge(body)) if len(t) >= 2 and t in simp)
    return score


_SENT_RE = re.compile(r"[^.!?。！？]+(?:[.!?。！？]+|$)")


def attribute_citations(text: str, passages: Sequence[str], lang: str) -> str:
    """Append [n] to each uncited sentence whose facts are found in passage n (best match).
    The model often states the fact and forgets the citation; we cite for it, never invent."""
    out = []
    for m in _SENT_RE.finditer(text):
        sent = m.group(0)
        if not sent.strip() or re.search(r"\[\d+\]", sent):
            out.append(sent)
            continue
        scores = [evidence(sent, p, lang) for p in passages]
        best = max(range(len(scores)), key=lambda i: scores[i]) if scores else -1
        if best < 0 or scores[best] <= 0:
            out.append(sent)
            continue
        body = sent.rstrip()
        tail = sent[len(body):]
        stop = ""
        while body and body[-1] in ".!?。！？":
            stop = body[-1] + stop
            body = body[:-1]
        sep = " " if body.isascii() else ""
        out.append(f"{body}{sep}[{best + 1}]{stop}{tail}")
    return "".join(out)


@dataclass
class Check:
    ok: bool
    reason: str = ""  # key of REASONS when not ok
    refused: bool = False
    text: str = ""  # normalised answer text
    cited: list[int] = field(default_factory=list)


def is_refusal(text: str) -> bool:
    """The model said the passages don't answer (token, or a stock phrase without citations)."""
    stripped = text.strip().strip("`*\"'。.").strip()
    if stripped.upper().startswith(NO_ANSWER) or stripped.upper().endswith(NO_ANSWER):
        return not cited_numbers(normalize_citations(stripped.replace(NO_ANSWER, "")))
    if NO_ANSWER in text and not cited_numbers(normalize_citations(text)):
        return True
    low = text.lower()
    return not cited_numbers(normalize_citations(text)) and any(p in low for p in REFUSAL_PHRASES)


def check_answer(text: str, hits: Sequence[Hit], question: str, lang: str,
                 shown: Sequence[str] | None = None) -> Check:
    """Is this model reply acceptable for these passages? See the module docstring.
    `shown` are the passage texts the model read (with their English aids), checked
    together with the chunks."""
    lang = known_lang(lang)
    raw = (text or "").strip()
    if not raw:
        return Check(False, "empty")
    if is_refusal(raw):
        return Check(True, refused=True, text=REFUSAL[lang])
    if leaks_prompt(raw, (SYSTEM[lang], TRANSLATE_SYSTEM)):
        return Check(False, "leak", text=raw)
    norm = move_leading_citations(normalize_citations(raw.replace(NO_ANSWER, "")).strip())
    passages = [h.chunk.text for h in hits]
    if shown is not None:
        passages = [f"{s} {p}" for s, p in zip(shown, passages)]
    k = len(hits)
    if k == 1:
        # One passage given: whatever number the model wrote, it can only cite that one (the
        # worked examples cite [2], and the model copies the number with the form)
        norm = re.sub(r"\[\d+\]", "[1]", norm)
    cited = cited_numbers(norm)
    if any(n < 1 or n > k for n in cited):
        return Check(False, "bad_citation", text=norm, cited=cited)
    content = _content(norm)
    if cited and len(content) < (8 if lang == "en" else 3):
        return Check(False, "only_citation", text=norm, cited=cited)
    if not language_ok(norm, lang):
        return Check(False, "wrong_language", text=norm, cited=cited)
    if not cited:
        norm = attribute_citations(norm, passages, lang)
        cited = cited_numbers(norm)
        if not cited:
            return Check(False, "no_citation", text=norm)
    # a passage's 五千 allows "5,000": the English answer writes it in digits
    allowed_numbers = set().union(*(numbers(p) | numeral_numbers(p) for p in passages)) | numbers(question)
    norm = _drop_invented_years(norm, allowed_numbers)
    body = strip_citations(norm)
    if numbers(body) - allowed_numbers:
        return Check(False, "unsupported_number", text=norm, cited=cited)
    if lang == "en" and amounts(body) - set().union(amounts(question), *(amounts(p) for p in passages)):
        return Check(False, "unsupported_number", text=norm, cited=cited)  # "3000 billion" from 3000家
    cited_text = " ".join(passages[n - 1] for n in cited)
    if evidence(body, cited_text, lang) <= 0:
        return Check(False, "unsupported", text=norm, cited=cited)
    return Check(True, text=norm, cited=cited)


_MONTH_YEAR_RE = re.compile(
    r"\b((?:January|February|March|April|May|June|July|August|September|October|November|December))"
    r",?\s+((?:19|20)\d\d)\b"
)


def _drop_invented_years(text: str, allowed: set[str]) -> str:
    """"unveiled in September 2021" -> "unveiled in September" when no passage or the question
    has 2021: the model habitually completes a month with a year of its own."""
    return _MONTH_YEAR_RE.sub(lambda m: m.group(0) if numbers(m.group(2)) <= allowed else m.group(1), text)


def from_evidence(answer: str, question: str, evidence: Sequence[str]) -> bool:
    """Does a Chinese answer say what the picked evidence sentences say? What the answer adds
    to the question (its character pairs, numbers and Latin words that the question does not
    hold) must be found in the evidence, at least half of it, and every added number; an
    answer that adds nothing restates the question. The small model, given windows of three
    passages, often names another entity or figure of them; the fitted sentence picker is
    right far more often (measured in docs/ARCHITECTURE.md), so such an answer is replaced."""
    body = strip_citations(answer)
    ev = " ".join(evidence)
    new_pairs = _bigrams(body) - _bigrams(question)
    new_nums = numbers(body) - numbers(question)
    new_latin = _latin_tokens(body) - _latin_tokens(question)
    added = len(new_pairs) + len(new_nums) + len(new_latin)
    if not added:
        return False
    if new_nums - numbers(ev):
        return False
    found = len(new_pairs & _bigrams(ev)) + len(new_nums) + len(new_latin & _latin_tokens(ev))
    return 2 * found >= added


# Chinese magnitudes (also read by passages.english_magnitudes)
MAGNITUDE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(万亿|萬億|亿|億|万|萬)")
MAGNITUDE = {"万亿": 10**12, "萬億": 10**12, "亿": 10**8, "億": 10**8, "万": 10**4, "萬": 10**4}

_EN_AMOUNT_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(trillion|billion|million)\b", re.IGNORECASE)
_EN_SIZE = {"trillion": 10**12, "billion": 10**9, "million": 10**6}


def amounts(text: str) -> set[int]:
    """Amounts stated with a magnitude, in units: "154 billion" and "1540亿" -> 154000000000.
    `numbers()` is loose on purpose (3000 matches 3,000); this is the strict check an
    English answer's billions must pass, since the model turns 3000家 into "3000 billion"."""
    out = set()
    for m in _EN_AMOUNT_RE.finditer(text):
        out.add(round(float(m.group(1).replace(",", "")) * _EN_SIZE[m.group(2).lower()]))
    text = unicodedata.normalize("NFKC", text)
    for m in MAGNITUDE_RE.finditer(text):
        out.add(round(float(m.group(1)) * MAGNITUDE[m.group(2)]))
    for m in CN_MAGNITUDE_RE.finditer(text):
        value = cn_amount(m)
        if value:
            out.add(value)
    return out


# "百亿", "三千万": a magnitude written with Chinese numerals (not the head of a longer
# numeral: 三万二千五百 is not 三万)
CN_MAGNITUDE_RE = re.compile(
    r"(?<![\d.])([一二两三四五六七八九十百千]+)(万亿|萬億|亿|億|万|萬)(?![一二两三四五六七八九十百千零〇])")


def cn_amount(m: re.Match[str]) -> int:
    """The amount of a CN_MAGNITUDE_RE match in units ("百亿" -> 10**10), or 0 for 千万 (also
    the adverb "by all means", 千万不要) and numerals it cannot read."""
    if m.group(1) == "千" and m.group(2) in ("万", "萬"):
        return 0
    return _cn_int(m.group(1)) * MAGNITUDE[m.group(2)]
_CN_DIGIT = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNIT = {"十": 10, "百": 100, "千": 1000}


def _cn_int(text: str) -> int:
    """"百" -> 100, "三千" -> 3000, "十五" -> 15 (below 万; larger units are the caller's)."""
    total, digit = 0, 0
    for ch in text:
        if ch in _CN_DIGIT:
            digit = _CN_DIGIT[ch]
        else:
            total += (digit or 1) * _CN_UNIT[ch]
            digit = 0
    return total + digit


def citations_for(text: str, hits: Sequence[Hit]) -> list[Citation]:
    """The Citation of each passage [n] cited in `text` (normalised form), in order."""
    out = []
    for n in cited_numbers(text):
        hit = hits[n - 1]
        out.append(
            Citation(
                n=n,
                source=hit.chunk.source,
                text=hit.chunk.text,
                start=hit.chunk.start,
                end=hit.chunk.end,
                chunk_id=hit.chunk.id,
                score=float(hit.score),
            )
        )
    return out
