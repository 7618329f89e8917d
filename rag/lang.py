"""Which language and script a text is in, and conversion between scripts.

Uses OpenCC for simplified <-> traditional; a question's script decides the
script of the answer.
"""
from __future__ import annotations

import re
from functools import lru_cache

from rag.text import CJK_RE as _CJK_RE

_LATIN_WORD_RE = re.compile(r"[A-Za-z]{2,}")

# The languages an answer can be in (prompts and refusals exist for each).
LANGS = ("en", "zh-Hans", "zh-Hant")


def known_lang(lang: str) -> str:
    """`lang` when it is one of LANGS, else "en" (the answerers' default)."""
    return lang if lang in LANGS else "en"


@lru_cache(maxsize=None)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    return _converter("t2s").convert(text) if text else text


def to_simplified_aligned(text: str) -> str:
    """`to_simplified` when it keeps every character's position (OpenCC's t2s maps character
    for character almost always), else the text unchanged: offsets found in the result
    index the original."""
    simp = to_simplified(text)
    return simp if len(simp) == len(text) else text


def to_traditional(text: str) -> str:
    return _converter("s2t").convert(text) if text else text


def script_counts(text: str) -> tuple[int, int]:
    """(traditional-only characters, simplified-only characters) in text."""
    han = "".join(_CJK_RE.findall(text))
    if not han:
        return 0, 0
    simp = to_simplified(han)
    trad = to_traditional(han)
    n_trad = sum(1 for a, b in zip(han, simp) if a != b)
    n_simp = sum(1 for a, b in zip(han, trad) if a != b)
    return n_trad, n_simp


def detect_lang(text: str) -> str:
    """"en", "zh-Hans" or "zh-Hant". Chinese wins when the text has more
    ideographs than Latin words; a Chinese text with no script-specific
    character counts as simplified (the more common case)."""
    han = len(_CJK_RE.findall(text))
    words = len(_LATIN_WORD_RE.findall(text))
    if han == 0 or words > han:
        return "en"
    trad, simp = script_counts(text)
    return "zh-Hant" if trad > simp else "zh-Hans"


def to_script(text: str, lang: str) -> str:
    """Convert Chinese text to the script of `lang` (English is left as is)."""
    if lang == "zh-Hant":
        return to_traditional(text)
    if lang == "zh-Hans":
        return to_simplified(text)
    return text
