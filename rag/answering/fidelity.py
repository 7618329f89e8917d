"""Name fidelity of an English translation: the names of the evidence that the English
does not verifiably carry are kept, as written, beside it; names left in Chinese get pinyin.

The 1.5B model renders rare names freely (西北太平洋 as "western Pacific", 豪克斯湾联 as
"Houston Texans") or drops them when the translation runs long. Whether an English text
carries a Chinese word is checked with the dictionary the bridge uses (`rag.crossling`):
a CC-CEDICT sense of its English words or phrases, the word's pinyin, or the word itself
written in Chinese. A phrase of the evidence naming something (a place, person,
organisation, title) with a word none of these traces is shown as written after the
English sentence it belongs to ("... western Pacific (西北太平洋区) [1]."), as
`passages.names_as_written` does for romanised names: the written form can be looked up
and checked against the cited passage, a free rendering cannot.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from rag.text import CJK, cjk_count, is_cjk, is_person_name, posseg

# jieba's tags of words that carry no fact of their own: particles, prepositions,
# conjunctions, adverbs, pronouns, interjections, onomatopoeia, locality words.
_FUNCTION_TAGS = ("u", "p", "c", "d", "r", "y", "e", "o", "f")
# tags of the words a fact is named with: nouns of every kind, abbreviations, idioms,
# Latin words and numerals-as-names (jieba tags 七堵 "m")
_CONTENT_TAGS = ("n", "j", "l", "i", "eng", "m", "s", "nz", "vn")
_NAME_TAGS = ("nr", "ns", "nt", "nz", "eng", "j", "m")
_NUMERALS = set("零〇一二两三四五六七八九十百千万亿第")
_TITLE_RE = re.compile(r"《[^》]{1,30}》")
_SENT_END_RE = re.compile(r"(?<=[.!?])\s+")
_CITE_TAIL_RE = re.compile(r"((?:\s*\[\d+\])+)?([.!?]*)\s*$")


class _Trace:
    """What an English text (and the question) verifiably carries of Chinese words."""

    def __init__(self, english: str, question: str = ""):
        from rag.crossling import latin_key, renderings

        self.text = english + " " + question
        try:
            self.terms = [t for t in renderings(self.text) if len(t) >= 2 and all(is_cjk(c) for c in t)]
        except Exception:  # the dictionary is an aid, never a reason to fail an answer
            self.terms = []
        # the text's words and runs of up to three of them, letters only: a pinyin spelling
        # is matched whole, with or without spaces (Zhoushan, Zhou Shan), never inside a word
        words = [latin_key(w) for w in re.findall(r"[^\W\d_]+", self.text)]
        self.keys = {"".join(words[i:i + n]) for i in range(len(words)) for n in (1, 2, 3)}

    def carries(self, word: str) -> bool:
        """A Chinese word is carried when the text writes it, one of its English words
        translates to a term sharing two characters with it in order (CC-CEDICT, both ways
        of containment: 太平洋 in 太平洋区, 控股公司 for "holding company"), or it reads as the
        word's pinyin (Zhoushan, Shandong)."""
        if word in self.text:
            return True
        covered = [False] * len(word)
        for t in self.terms:
            if word in t:
                return True
            at = word.find(t)
            while at >= 0:
                covered[at:at + len(t)] = [True] * len(t)
                at = word.find(t, at + 1)
        # a generic one-character head (区, 市, 人) of a longer word need not be rendered
        if covered.count(False) <= (1 if len(word) >= 3 else 0):
            return True
        from rag.crossling import pinyin_keys

        return any(k in self.keys for k in pinyin_keys(word))


def _content(word: str, flag: str) -> bool:
    cjk = cjk_count(word)
    if flag == "m" and (any(c.isdigit() for c in word) or all(c in _NUMERALS for c in word)
                        or word[0] in "万亿"):
        return False  # a number: checked as a number (checking.numbers)
    return cjk >= 2 and flag.startswith(_CONTENT_TAGS)


def _names(word: str, flag: str) -> bool:
    """Does jieba tag `word` as naming something? (Its person-name tag only on a word rare
    in its dictionary: `rag.text.is_person_name`.)"""
    if flag.startswith("nr"):
        return is_person_name(word, flag)
    return flag.startswith(_NAME_TAGS)


@lru_cache(maxsize=1)
def _frame_chars() -> frozenset[str]:
    """The one-character words that only frame a Chinese question or sentence (是, 有, 的, 被:
    rag/data/question_words.json, a fact of the language)."""
    from rag.answering.gate import question_words

    return frozenset(w for w in question_words()["frame"]["zh"] if len(w) == 1)


_PIECE_TAGS = ("n", "m", "j")  # tags of one-character pieces of an unknown word
_PIECE_NAME_TAGS = ("nr", "ns", "nt", "nz")


def _merged_pieces(source: str) -> list[tuple[str, str]]:
    """jieba's (word, tag) of `source`, with each run of one-character nouns and numerals
    that holds a name piece joined into one name (tag nz): jieba cuts a name its dictionary
    lacks into characters (三吴地区 -> 三/m 吴/nr 地区/n), and a one-character piece is no
    content word of its own, so the name was never checked against the translation."""
    out: list[tuple[str, str]] = []
    run: list[tuple[str, str]] = []

    def flush():
        if len(run) >= 2 and any(f.startswith(_PIECE_NAME_TAGS) for _, f in run):
            out.append(("".join(w for w, _ in run), "nz"))
        else:
            out.extend(run)
        run.clear()

    for tok in posseg().cut(source):
        if len(tok.word) == 1 and is_cjk(tok.word) and tok.flag.startswith(_PIECE_TAGS):
            run.append((tok.word, tok.flag))
        else:
            flush()
            out.append((tok.word, tok.flag))
    flush()
    return out


def untraced_phrases(source: str, trace: _Trace) -> list[tuple[str, bool]]:
    """The phrases of the Chinese `source` holding a content word `trace` does not carry,
    as written, in order, each with whether it names something (a name, place, title,
    Latin word or abbreviation: what a free rendering loses first). A phrase is a maximal
    run of words between punctuation, function words and verbs of two or more characters
    (jieba tags a one-character part of a name as a verb: 联 of 豪克斯湾联), so a name
    keeps its generic parts (足球俱乐部 of 豪克斯湾联足球俱乐部); a 《title》 is one phrase."""
    out: list[tuple[str, bool]] = []
    for title in _TITLE_RE.findall(source):
        inner = [w.word for w in posseg().cut(title[1:-1]) if _content(w.word, w.flag)]
        if title[1:-1] not in trace.text and not all(trace.carries(w) for w in inner):
            out.append((title, True))
    source = _TITLE_RE.sub("。", source)
    run: list[tuple[str, str]] = []

    def close():
        # a one-character verb or adjective at either end is not part of the name (是英国)
        while run and run[0][1].startswith(("v", "a")):
            run.pop(0)
        while run and run[-1][1].startswith(("v", "a")):
            run.pop()
        missing = [(w, f) for w, f in run if _content(w, f) and not trace.carries(w)]
        phrase = "".join(w for w, _ in run).strip()
        # the phrase as a whole too: jieba may cut a name apart from its romanisation
        # (史巴列/堤, written "Shi Baliedi")
        if missing and not trace.carries(phrase) and all(p != phrase for p, _ in out):
            out.append((phrase, any(_names(w, f) for w, f in missing)))
        run.clear()

    for word, flag in _merged_pieces(source):
        if not word.strip() or not any(is_cjk(c) or c.isalnum() for c in word):
            close()  # punctuation
        elif flag.startswith(_FUNCTION_TAGS) or (flag.startswith(("v", "a", "b")) and flag != "vn" and len(word) > 1) \
                or word in _frame_chars():
            close()  # (a one-character frame word, 是/有/被, is a copula or particle: no name's part)
        else:
            run.append((word, flag))
    close()
    return out


def _sentences(text: str) -> list[str]:
    """`text` cut after each sentence end (the pieces, joined, are `text` again)."""
    out, at = [], 0
    for m in _SENT_END_RE.finditer(text):
        out.append(text[at:m.end()])
        at = m.end()
    out.append(text[at:])
    return [s for s in out if s]


def _score(sentence: str, source: str) -> int:
    from rag.answering.checking import evidence

    return evidence(sentence, source, "en")


def keep_written_terms(english: str, sources: Sequence[str], question: str = "",
                       context: Iterable[str] = ()) -> str:
    """`english` (a translation of the Chinese `sources`, cited [n]) with each name of the
    sources it does not verifiably carry (`untraced_phrases` that name something: places,
    people, organisations, titles; `context`: the English shown before it, which may carry
    them) added as written, in parentheses, after the English sentence that best matches
    its source sentence. Common nouns are left to the translation: a paraphrase of one
    ("3,000 manufacturers" for 3000家制造业企业) is no loss, a free rendering of a name
    is (replayed on the crosslingual LLM answers of runs/eval-llm-s16: names alone made 6
    of the 7 answers right that all untraced phrases made right, with far less Chinese).
    Names are added in the sources' order while the whole answer stays an English one
    (`checking.language_ok`: more English words than Chinese characters)."""
    from rag.answering.checking import language_ok

    shown = " ".join([*context, english])
    trace = _Trace(shown, question)
    sents = _sentences(english)
    if not any(s.strip() for s in sents):
        return english
    found = [(src, p) for src in sources for p, named in untraced_phrases(src, trace) if named]
    extra: dict[int, list[str]] = {}
    for src, p in found:
        if not language_ok(f"{shown} {p}", "en"):
            continue  # the answer would no longer be an English one
        shown = f"{shown} {p}"
        best = max(range(len(sents)), key=lambda i: _score(sents[i], src))
        extra.setdefault(best, []).append(p)
    if not extra:
        return english
    out = []
    for i, s in enumerate(sents):
        if i in extra:
            body = s.rstrip()
            trail = s[len(body):]
            m = _CITE_TAIL_RE.search(body)
            cites, stop = (m.group(1) or "").strip(), m.group(2)
            body = body[: m.start()].rstrip()
            s = f"{body} ({'、'.join(extra[i])})" + (f" {cites}" if cites else "") + stop + trail
        out.append(s)
    return "".join(out)


_CJK_RUN_RE = re.compile(f"[{CJK}]+")  # rag.text's ideograph ranges, in runs
_PAREN_RE = re.compile(r"\([^()]*\)|《[^》]*》")


def romanise_left_names(english: str) -> str:
    """"from the city of寿光 [1]" -> "from the city of 寿光 (Shouguang) [1]": a name the model
    left in Chinese inside its English is followed by its pinyin, which an English reader can say and search for (a name by
    jieba's tags, as `_names`, or by CC-CEDICT's proper nouns: jieba tags the city 寿光 as a
    common person's name). Chinese in
    parentheses or a 《title》 is a written form shown on purpose and is left alone; a name is
    romanised at its first mention only."""
    from pypinyin import lazy_pinyin

    from rag.crossling import is_proper_noun

    skip = [m.span() for m in _PAREN_RE.finditer(english)]
    out, at = [], 0
    seen: set[str] = set()
    for m in _CJK_RUN_RE.finditer(english):
        if any(a <= m.start() < b for a, b in skip) or m.group(0) in seen:
            continue  # shown on purpose, or romanised at its first mention
        seen.add(m.group(0))
        words = list(posseg().cut(m.group(0)))
        if not any(is_proper_noun(w.word) or (_names(w.word, w.flag) and not w.flag.startswith(("m", "eng")))
                   for w in words):
            continue
        roman = " ".join("".join(lazy_pinyin(w.word)).capitalize() for w in words)
        lead = " " if m.start() and english[m.start() - 1].isalpha() else ""
        out.append(english[at:m.start()] + lead + m.group(0) + f" ({roman})")
        at = m.end()
    out.append(english[at:])
    return "".join(out)
