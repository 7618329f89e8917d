"""Text helpers shared by every stage: what counts as a Chinese character, one
jieba setup, and the stopword lists (data files in rag/data/).

One definition of each, so the chunker, the retriever, the gate and the
answerers agree on what a CJK character or a stopword is.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"

# CJK ideographs: basic block, extension A, compatibility ideographs, and the
# supplementary planes' extensions B-F and compatibility supplement (rare characters,
# but real ones: the DRCD corpus writes Chữ Nôm with them).
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
CJK_RE = re.compile(f"[{CJK}]")


def is_cjk(ch: str) -> bool:
    return bool(CJK_RE.match(ch))


def cjk_count(text: str) -> int:
    return len(CJK_RE.findall(text))


def without_possessive(word: str) -> str:
    """An English word or name without its possessive 's ("people's" -> "people",
    "Shanghai's" -> "Shanghai"), as the question's words, the dictionary's senses and a
    follow-up's antecedents are all read."""
    return word[:-2] if word.endswith("'s") else word


def numerals_to_digits(text: str) -> str | None:
    """The text with its Chinese numerals written in digits (五千余首 -> 5000余首), by cn2an;
    None when cn2an cannot read it. One wrapper for the answer check and `rag eval`."""
    import warnings

    import cn2an

    with warnings.catch_warnings():  # cn2an warns on a lone unit (万) it cannot read
        warnings.simplefilter("ignore")
        try:
            return cn2an.transform(text, "cn2an")
        except (ValueError, KeyError):
            return None


def _word_list(name: str) -> frozenset[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


@lru_cache(maxsize=None)
def stopwords(kind: str = "search") -> frozenset[str]:
    """"search": tokens the keyword index drops (Chinese and English function and
    question words); "bridge": English words the dictionary bridge skips;
    "function": English function words that are no evidence that a sentence comes from
    a passage (the LLM answer check)."""
    files = {"search": "stopwords_search.txt", "bridge": "stopwords_en_bridge.txt",
             "function": "stopwords_en_function.txt"}
    return _word_list(files[kind])


@lru_cache(maxsize=1)
def jieba():
    """jieba, initialised once and quiet."""
    import jieba as jb

    jb.setLogLevel(logging.WARNING)
    jb.initialize()
    return jb


@lru_cache(maxsize=1)
def posseg():
    """jieba's part-of-speech tagger (over the same initialised dictionary)."""
    jieba()
    import jieba.posseg as ps

    return ps


# jieba's part-of-speech tags that name something: people (nr, nrt transliterated, nrfg),
# places (ns), organisations (nt), other proper nouns (nz)
ENTITY_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nt", "nz"})

# jieba tags some common words as people's names (智能化, 高水平); a real name is rare in its
# dictionary (a count under this), so the tag is believed only on a rare word.
NAME_MAX_FREQ = 10


def is_person_name(word: str, flag: str) -> bool:
    """Whether jieba's tag `flag` names a person by `word` (nr*, on a word rare in its
    dictionary; the tag on a common word is a mistake)."""
    return flag.startswith("nr") and (jieba().dt.FREQ.get(word) or 0) < NAME_MAX_FREQ
