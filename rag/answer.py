"""Extractive answers: the best-supported sentences of the retrieved chunks,
each cited, or a plain refusal when the documents do not support an answer.

No model generates text here, so it works with nothing but the embedder;
Chinese output follows the question's script.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

from rag.chunking import split_sentences
from rag.lang import detect_lang, to_script, to_simplified
from rag.retrieval import query_tokens, tokenize
from rag.types import Answer, Citation, Hit

REFUSALS = {
    "en": "The documents do not contain the answer to this question.",
    "zh-Hans": "文档中没有找到这个问题的答案。",
    "zh-Hant": "文件中沒有找到這個問題的答案。",
}
_LEADS = {
    "en": "From the documents:",
    "zh-Hans": "根据文档：",
    "zh-Hant": "根據文件：",
}
_NUM_RE = re.compile(r"\d+(?:\.\d+)?")
_CJK_RE = re.compile(r"[\u3400-\u9fff]")


# Words that frame a Chinese question without naming what it is about
# ("叫什么", "多大", "哪一年"); they are left out of the coverage check.
QUESTION_FRAME = set(
    """叫 叫做 称为 名字 名称 指 指的是 多 大 多大 多长 多久 多高 几 几年 几个 几倍 哪一年 一年 哪年 哪几年 年份 用 用了 跟 来 能
    打算 时候 份 哪份 哪家 哪位 哪座 是谁 谁 具体 主要 方面 哪方面 情况 内容 有何 何 做 做了 些 怎么样 样 比 差 相比 比较""".split()
)


def refusal_text(lang: str) -> str:
    return REFUSALS.get(lang, REFUSALS["en"])


# What kind of answer a question asks for, from its wording. An extractive
# answer is only given when a retrieved passage holds that kind of thing
# (a number for "how many", a person for "who", a date for "when").
_TYPE_PATTERNS = {
    "number": re.compile(
        r"多少|几[个家台倍年成次位名项]?|多大|多高|多长|多快|规模|比例|百分之|增长率|增速|"
        r"\bhow (many|much|large|big|fast|long)\b|\bwhat (share|percentage|proportion|portion|fraction)\b|\bgrowth rate\b",
        re.I,
    ),
    # "Who heads X?" needs a person's name; "who should open what?" may be
    # answered by a kind of organisation, so only role questions are typed.
    "person": re.compile(
        r"(谁|哪位|何人|\bwho(m|se)?\b).*(局长|书记|主任|负责人|部长|市长|省长|创始人|董事长|总裁|领导|\bhead|\bleader|\bsecretary|"
        r"\bappointed|\bfounder|\bchairman|\bceo\b|\bmayor|\bgovernor|\bdirector|\bminister)"
        r"|(局长|书记|主任|负责人|部长|市长|省长|创始人|董事长|总裁|领导).*(谁|哪位|何人)",
        re.I,
    ),
    "time": re.compile(r"什么时候|何时|哪一?年|哪个月|几月|\bwhen\b|\bwhat (year|month|date)\b|\bwhich (year|month)\b", re.I),
}
_HAS_TYPE = {
    "number": re.compile(r"\d|[一二两三四五六七八九十百千万亿]+[个家台倍年成%]|百分之|[百千万亿]|第[一二三四五六七八九十]"),
    "time": re.compile(
        r"\d{4}年|\d{1,2}月|[今去明前]年|[一二三四五六七八九十]+月|\d{4}|"
        r"\b(january|february|march|april|may|june|july|august|september|october|november|december|spring|summer|autumn|winter)\b"
    ),
}
_YEAR_RE = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_ENTITY_POS = ("ns", "nr", "nt", "nrt", "nz")
# Words jieba tags as place names that name no place ("哪个城市" asks for one).
_GENERIC_PLACES = frozenset("城市 省份 省市 地方 各地 全国 国家 地区 区域 西部 东部 中部 沿海".split())


def expected_type(question: str) -> str | None:
    q = to_simplified(question)
    for kind in ("person", "time", "number"):
        if _TYPE_PATTERNS[kind].search(q):
            return kind
    return None


@lru_cache(maxsize=1)
def _posseg():
    _jieba_init()
    import jieba.posseg

    return jieba.posseg


def _jieba_init():
    from rag.retrieval import _jieba

    return _jieba()


@lru_cache(maxsize=1)
def _place_names() -> frozenset[str]:
    """Chinese place names (jieba tags some, like 合肥, as common nouns)."""
    try:
        from rag.crossling import _PLACES
    except ImportError:
        return frozenset()
    return frozenset(_PLACES.values())


# jieba tags some common words as person names (高潮 "climax"); a real name
# starts with a common surname and is rare as a dictionary word.
_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)


def _is_place(term: str) -> bool:
    return any(w.flag == "ns" for w in _posseg().cut(term))


def _has_person(text: str) -> bool:
    """Whether the text names a person."""
    freq = _jieba_init().dt.FREQ
    for w in _posseg().cut(text):
        if w.flag in ("nr", "nrt") and 2 <= len(w.word) <= 4 and w.word[0] in _SURNAMES and freq.get(w.word, 0) < 500:
            return True
    return False


@dataclass
class QuestionNeeds:
    """What a passage must contain to answer the question."""

    kind: str | None  # "number" | "person" | "time" | None
    entities: list[list[str]]  # each: alternatives (simplified, lower case)
    years: set[str]
    nouns: list[list[str]]  # other content terms (alternatives each)
    english: bool = False
    english_words: list[str] = field(default_factory=list)


@dataclass
class Support:
    """How well the retrieved passages cover the question's content."""

    coverage: float  # idf-weighted share of query terms found in the best hit
    best_dense: float
    passing: list[int] = field(default_factory=list)  # hit indexes that meet the needs
    reason: str = ""

    def answerable(self, min_coverage: float, min_dense: float = 0.0) -> bool:
        return self.coverage >= min_coverage and bool(self.passing) and self.best_dense >= min_dense


def _idf(term: str, doc_tokens) -> float:
    """doc_tokens: the token sets of the corpus' chunks, or the keyword index
    (anything with len() and doc_freq(term)), which counts them without a scan."""
    n = len(doc_tokens) or 1
    df = sum(1 for toks in doc_tokens if term in toks) if isinstance(doc_tokens, list) else doc_tokens.doc_freq(term)
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


class ExtractiveAnswerer:
    """Builds an answer from retrieved sentences; refuses on weak support."""

    mode = "extractive"

    def __init__(self, min_coverage: float = 0.1, min_dense: float = 0.0, max_sentences: int = 2,
                 corpus_tokens: list[set[str]] | None = None, min_noun_share: float = 0.3):
        self.min_coverage = min_coverage
        self.min_dense = min_dense
        self.max_sentences = max_sentences
        self.corpus_tokens = corpus_tokens or []
        self.min_noun_share = min_noun_share

    def _query_groups(self, question: str) -> list[list[str]]:
        """Query terms as groups of alternatives (tokens): one per Chinese
        token, or one per English content word bridged to Chinese."""
        toks = [t for t in dict.fromkeys(tokenize(question)) if t not in QUESTION_FRAME]
        groups = [[t] for t in toks if not t.isascii() or t.isdigit()]
        if detect_lang(question) == "en":
            from rag.crossling import bridge_groups

            for g in bridge_groups(question):
                toks = [t for term in g for t in (tokenize(term) or [term.lower()])]
                if toks:
                    groups.append(list(dict.fromkeys(toks)))
        else:  # Latin words inside a Chinese question (AI, PPT) count as they are
            groups += [[t] for t in toks if t.isascii() and not t.isdigit()]
        return groups

    def needs(self, question: str) -> QuestionNeeds:
        lang = detect_lang(question)
        q = to_simplified(question)
        entities: list[list[str]] = []
        nouns: list[str] = []
        noun_groups: list[list[str]] = []
        if lang == "en":
            from rag.crossling import bridge_groups

            from rag.crossling import _PLACES

            # Capitalised names (not the first word): Shanghai, World Bank, KPMG.
            # Places must be in the passage; other names (people, bodies,
            # events) are bridged less reliably, so they count as nouns.
            names = []
            for m in re.finditer(r"(?<!^)(?<![.?!] )\b([A-Z][A-Za-z]+(?:\s+[A-Z][A-Za-z]+)*)", question.strip()):
                name = m.group(1)
                if name in ("AI", "I") or name.isupper() and len(name) <= 2:
                    continue
                alts = [t.lower() for g in bridge_groups(name) for t in g] + [name.lower()]
                if name.lower() in _PLACES or any(_is_place(t) for g in bridge_groups(name) for t in g[:1]):
                    entities.append(list(dict.fromkeys(alts)))
                names.append(name.lower())
            for g in bridge_groups(question):
                if not any(_PLACES.get(n) in g for n in names):
                    noun_groups.append([t.lower() for t in g])
        else:
            for w in _posseg().cut(q):
                word = w.word.strip().lower()
                if len(word) < 2 or word in QUESTION_FRAME:
                    continue
                if word in _GENERIC_PLACES:
                    nouns.append(word)
                elif w.flag in _ENTITY_POS or word in _place_names():
                    entities.append([word])
                elif w.flag.startswith("n"):
                    nouns.append(word)
        noun_groups += [[n] for n in nouns]
        words = [t for t in tokenize(question) if t.isascii() and t.isalpha() and len(t) > 2] if lang == "en" else []
        return QuestionNeeds(expected_type(question), entities, set(_YEAR_RE.findall(q)), noun_groups, lang == "en", words)

    def _meets(self, needs: QuestionNeeds, hit: Hit) -> bool:
        text = to_simplified(f"{hit.chunk.heading} {hit.chunk.text}").lower()
        if any(not any(a in text for a in alts) for alts in needs.entities):
            return False
        # A Chinese question's nouns are exact (jieba); with a single one, a
        # paraphrase ("文件" for the title of a plan) is too likely to judge by.
        # English terms are bridged alternatives, so any count is judged.
        enough = len(needs.nouns) >= (1 if needs.english else 2)
        share = sum(any(a in text for a in g) for g in needs.nouns) / len(needs.nouns) if needs.nouns else 1.0
        if needs.english_words:  # an English passage answers in the question's own words
            share = max(share, sum(w in text for w in needs.english_words) / len(needs.english_words))
        if enough and share < self.min_noun_share:
            return False  # the passage is about the names asked, not the thing asked
        years = set(_YEAR_RE.findall(text))
        if needs.years and years and not (needs.years & years):
            return False  # the passage is about another year
        if needs.kind == "person":
            return _has_person(text)
        if needs.kind in _HAS_TYPE:
            return bool(_HAS_TYPE[needs.kind].search(text))
        return True

    def support(self, question: str, hits: list[Hit]) -> Support:
        if not hits:
            return Support(0.0, 0.0, [], "nothing retrieved")
        groups = self._query_groups(question)
        docs = self.corpus_tokens or [set(tokenize(h.chunk.text)) for h in hits]
        weights = [max(_idf(t, docs) for t in g) for g in groups]
        total = sum(weights) or 1.0
        best = 0.0
        for h in hits[:3]:
            toks = set(tokenize(f"{h.chunk.heading} {h.chunk.text}"))
            covered = sum(w for g, w in zip(groups, weights) if any(t in toks for t in g))
            best = max(best, covered / total)
        dense = max((h.dense_score or 0.0) for h in hits[:3])
        needs = self.needs(question)
        passing = [i for i, h in enumerate(hits[:3]) if self._meets(needs, h)]
        return Support(best, dense, passing, "" if passing else f"no passage has the {needs.kind or 'names'} asked for")

    def pick_spans(self, question: str, hits: list[Hit], allowed: list[int]) -> list[tuple[int, int, int]]:
        """(hit index, start, end) of the best sentences, from the passages that meet the
        question's needs: a second sentence only when it is nearly as relevant. Document order
        within a passage. The LLM answerer builds its passages around these."""
        q = set(query_tokens(question))
        scored = []
        for hi, h in enumerate(hits[:3]):
            if hi not in allowed:
                continue
            text = h.chunk.text
            for a, b in split_sentences(text):
                sent = text[a:b]
                toks = set(tokenize(sent))
                overlap = len(q & toks) / (len(q) or 1)
                nums = set(_NUM_RE.findall(question)) & set(_NUM_RE.findall(sent))
                score = overlap + 0.2 * len(nums) + 0.15 * (1.0 / (hi + 1))
                scored.append((score, hi, a, b))
        scored.sort(key=lambda s: -s[0])
        picked = []
        for score, hi, a, b in scored:
            if picked and (score <= 0.15 or score < 0.5 * scored[0][0]):
                break  # a second sentence only when it is nearly as relevant
            picked.append((hi, a, b))
            if len(picked) >= self.max_sentences:
                break
        picked.sort()
        return picked

    def _pick_sentences(self, question: str, hits: list[Hit], allowed: list[int]) -> list[tuple[int, str]]:
        """(hit index, sentence) pairs of `pick_spans`."""
        return [(hi, hits[hi].chunk.text[a:b]) for hi, a, b in self.pick_spans(question, hits, allowed)]

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer:
        sup = self.support(question, hits)
        if not sup.answerable(self.min_coverage, self.min_dense):
            return Answer(refusal_text(lang), True, [], question, lang=lang, mode=self.mode, hits=hits)
        picked = self._pick_sentences(question, hits, sup.passing)
        numbers: dict[int, int] = {}
        citations: list[Citation] = []
        parts = []
        for hi, sent in picked:
            if hi not in numbers:
                n = len(numbers) + 1
                numbers[hi] = n
                h = hits[hi]
                citations.append(
                    Citation(n, h.chunk.source, h.chunk.text, h.chunk.start, h.chunk.end, h.chunk.id, h.score)
                )
            parts.append(f"{to_script(sent, lang)}[{numbers[hi]}]")
        lead = _LEADS.get(lang, _LEADS["en"])
        if lang == "en" and any(_CJK_RE.search(sent) for _, sent in picked):
            lead = "From the documents (quoted in the original Chinese):"
        sep = " " if lang == "en" else ""
        text = lead + (" " if lang == "en" else "") + sep.join(parts)
        return Answer(text, False, citations, question, lang=lang, mode=self.mode, hits=hits)

    def stream(self, question: str, hits: list[Hit], lang: str) -> Iterator[str | Answer]:
        ans = self.answer(question, hits, lang)
        yield ans.text
        yield ans
