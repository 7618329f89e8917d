"""Answerability: do the retrieved passages answer the question, and which ones?

A small logistic model, fitted by `scripts/fit_gate.py` on the development sets
and stored in `rag/data/gate.json`, scores each (question, passage) pair from
signals that hold for any collection: dense similarity, keyword score, the
share of the question's content terms a passage (and its best sentence)
covers, whether it holds the kind of thing asked for (a number, a date, a
person, a place) and the names the question mentions. The question is
answerable when a passage among the top few scores above the fitted threshold.
No word list or rule here names a term of any document; the question words are
language facts in `rag/data/question_words.json`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rag.chunking import split_sentences
from rag.lang import detect_lang, to_simplified, to_simplified_aligned
from rag.text import DATA, ENTITY_TAGS, posseg
from rag.types import Hit

MODEL_FILE = DATA / "gate.json"
QUESTION_WORDS_FILE = DATA / "question_words.json"
TOP_PASSAGES = 3  # passages the gate (and the answerers) look at

# Kinds of things an answer can be, recognised in a passage by language facts.
_NUMERAL = "零一二两三四五六七八九十百千万亿"
_HAS_KIND = {
    # a count or amount, not a date ("1955年12月" answers "when", not "how many")
    "number": re.compile(rf"\d+(?:[.,]\d+)*(?!\d|\s*[年月日号])|[{_NUMERAL}]{{2,}}(?![年月日])|"
                         rf"[{_NUMERAL}][个位名次岁种件座条项家台倍成人部首]|百分之"),
    "time": re.compile(
        rf"\d{{1,4}}\s*年|\d{{1,2}}\s*月|\d{{1,2}}\s*日|[{_NUMERAL}]+[年月日]|世纪|年代|公元|朝|时期|时代|"
        r"\b(1[0-9]|20)\d{2}\b|\b(january|february|march|april|may|june|july|august|september|october|"
        r"november|december|century)\b"
    ),
}
_YEAR_RE = re.compile(r"(?<!\d)(?:1[0-9]|20)\d{2}(?!\d)")
_CODE_RE = re.compile(r"(?<![A-Za-z\d])[A-Za-z]+\d[A-Za-z\d]*")
_NUMBER_RE = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?")
_LATIN_NAME_RE = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][a-zA-Z'’\-]+(?:\s+[A-Z][a-zA-Z'’\-]+)*")

FEATURES = [
    "dense", "dense_gap", "keyword", "inv_rank", "coverage", "sentence_coverage",
    "kind_asked", "kind_in_sentence", "kind_in_passage", "names_asked", "name_coverage",
    "year_conflict", "crosslingual",
]


@lru_cache(maxsize=1)
def question_words() -> dict:
    return json.loads(QUESTION_WORDS_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=2)
def _cues(lang_key: str) -> list[tuple[str, str]]:
    """(cue, kind) pairs, longest cue first so "how long" beats "how". A Chinese cue
    哪个 + noun is also asked as 哪一个 + noun and 哪一 + noun (哪一個國家, 哪一國家), and
    哪 + noun as 哪一 + noun (哪一国, 哪一位)."""
    types = question_words()["types"]
    pairs = [(cue, kind) for kind, by_lang in types.items() for cue in by_lang[lang_key]]
    pairs += [(which + cue[2:], kind) for cue, kind in pairs if cue.startswith("哪个") and len(cue) > 2
              for which in ("哪一个", "哪一")]
    pairs += [("哪一" + cue[1:], kind) for cue, kind in pairs
              if cue.startswith("哪") and not cue.startswith(("哪个", "哪一")) and cue not in ("哪里", "哪儿")]
    return sorted(dict.fromkeys(pairs), key=lambda p: -len(p[0]))


@lru_cache(maxsize=256)
def _en_cue_re(cue: str) -> re.Pattern:
    """An English cue as a pattern; "which city" also with a word between ("which
    Taiwanese city", "what European country")."""
    words = cue.split(" ")
    if len(words) == 2 and words[0] in ("which", "what"):
        return re.compile(rf" {words[0]} (?:[a-z]+ )?{words[1]} ")
    return re.compile(rf" {re.escape(cue)} ")


def expected_kind(question: str) -> str | None:
    """"person", "time", "place", "number" or None, from the question words."""
    if detect_lang(question) == "en":
        q = " " + re.sub(r"[^a-z0-9]+", " ", question.lower()) + " "
        for cue, kind in _cues("en"):
            if _en_cue_re(cue).search(q):
                return kind
        return None
    q = to_simplified(question)
    which = frozenset(question_words()["which_before"]["zh"])
    for cue, kind in _cues("zh"):
        # 哪 before a numeral or a classifier is the determiner "which" (在哪五大领域)
        if any(not cue.endswith("哪") or q[m.end():m.end() + 1] not in which
               for m in re.finditer(re.escape(cue), q)):
            return kind
    return None


@lru_cache(maxsize=4096)
def kind_spans(text: str, broad: bool = False) -> dict[str, tuple[tuple[int, int], ...]]:
    """Where the text holds each kind of answer: numbers and dates by pattern, people and
    places by jieba's part-of-speech tags (and capitalised Latin names). `broad` also takes
    jieba's numerals (m: 三重, 第一, 四首歌), time words (t: 明代, 清末) and organisations
    (nt: "who" is often answered by one), which the patterns miss: the gate asks whether a
    passage can hold the answer at all and wants every candidate; the span picker asks which
    sentence holds it, and those common words (一部, 当时) would point it at the wrong one.
    Cached: the gate and the span picker look at the same passages."""
    simp = to_simplified_aligned(text)
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in ("number", "time", "person", "place")}
    for kind, rx in _HAS_KIND.items():
        out[kind] = [m.span() for m in rx.finditer(simp.lower())]
    tags = {"nr": "person", "nrt": "person", "nrfg": "person", "ns": "place"}
    if broad:
        tags.update({"nt": "person", "m": "number", "mq": "number", "t": "time"})
    for a, b, flag in _tagged_words(simp):
        if flag in tags:
            out[tags[flag]].append((a, b))
    for m in re.finditer(r"[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*", text):
        out["person"].append(m.span())
        out["place"].append(m.span())
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=4096)
def _tagged_words(simp: str) -> tuple[tuple[int, int, str], ...]:
    """jieba's words of two or more characters in `simp`, as (start, end, tag). Cached on
    its own: `kind_spans` reads a passage both narrowly and broadly, with one cut."""
    out, pos = [], 0
    for w in posseg().cut(simp):
        if len(w.word) >= 2:
            out.append((pos, pos + len(w.word), w.flag))
        pos += len(w.word)
    return tuple(out)


def has_kind(kind: str | None, text: str, start: int = 0, end: int | None = None, broad: bool = False) -> bool:
    """Whether text[start:end] holds the kind of thing a question asks for (`broad`: as
    `kind_spans` reads it for the gate)."""
    if kind is None:
        return False
    end = len(text) if end is None else end
    return any(a < end and b > start for a, b in kind_spans(text, broad)[kind])


@dataclass(frozen=True)
class Name:
    """A name, place or number the question mentions. Held by a text that holds one of its
    `forms` (whole spellings); a Latin name of several words is also held in part, by the
    share of its words (`parts`, each with its translations as alternatives) the text holds,
    so that one common word's translation does not count as the whole name."""

    forms: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...] = ()

    def share(self, simp: str) -> float:
        """How much of the name the (simplified, lower-cased) text holds, 0..1."""
        if any(f in simp for f in self.forms):
            return 1.0
        if not self.parts:
            return 0.0
        return sum(any(a in simp for a in p) for p in self.parts) / len(self.parts)


@dataclass
class Question:
    """What a passage must hold to answer a question (built once per question)."""

    text: str
    english: bool
    kind: str | None
    groups: list[list[str]]   # content terms, alternatives within a group (search tokens)
    weights: list[float]      # idf of each group
    names: list[Name]         # names, places, numbers the question mentions
    years: set[str]


@dataclass
class Support:
    """The gate's verdict: answerable or not, and the passages that answer."""

    answerable: bool
    probability: float                             # best passage's score, 0..1
    passing: list[int] = field(default_factory=list)  # hit indexes above the threshold, best first
    scores: list[float] = field(default_factory=list)  # one per looked-at hit
    kind: str | None = None
    reason: str = ""
    question: Question | None = None  # what the gate read off the question (the span picker reuses it)


@lru_cache(maxsize=4096)
def sentence_tokens(text: str) -> tuple[tuple[tuple[int, int], frozenset[str]], ...]:
    """Each sentence span of a passage with its search tokens. Cached: the gate and the
    span picker read the same passages for one question."""
    from rag.tokens import tokenize

    return tuple(((a, b), frozenset(tokenize(text[a:b]))) for a, b in split_sentences(text))


class AnswerabilityGate:
    """`check(question, hits) -> Support` with the fitted model in rag/data/gate.json."""

    def __init__(self, model: dict | None = None, corpus=None):
        self.model = model if model is not None else load_model()
        # The live index's statistics (a rag.retrieval.Searcher): `idf(term)` weighs the
        # question's terms, `vocab` (rag.crossling.CorpusVocab) bridges English names.
        # Read at each question, so a reloaded index is followed.
        self.corpus = corpus
        # one threshold for a passage in the question's language ("same_language") and one
        # for a passage in the other ("crosslingual": read through the dictionary bridge)
        self.thresholds = {k: float(v) for k, v in self.model["threshold"].items()}

    def idf(self, term: str) -> float:
        return self.corpus.idf(term) if self.corpus is not None else 1.0

    @property
    def vocab(self):
        return self.corpus.vocab if self.corpus is not None else None

    # ---- question side -------------------------------------------------
    def question(self, question: str) -> Question:
        from rag.tokens import tokenize

        english = detect_lang(question) == "en"
        frame = set(question_words()["frame"]["en" if english else "zh"])
        cues = {c for c, _ in _cues("en" if english else "zh")}
        toks = [t for t in dict.fromkeys(tokenize(question)) if t not in frame and t not in cues]
        groups: list[list[str]] = []
        weights: list[float] = []
        names: list[Name] = []
        q = to_simplified(question)
        if english:
            from rag.crossling import bridge_groups_sourced, fold_latin

            vocab = self.vocab
            # One group per content word (or phrase): its Chinese terms, and the word itself
            # for documents in English. A word the dictionary cannot bridge comes back as
            # itself. Never the word again as a group of its own: no Chinese passage could
            # cover it, and English questions' coverage would be halved.
            for g, words in bridge_groups_sourced(question, vocab):
                alts = list(dict.fromkeys(t for term in g for t in (tokenize(term) or [term.lower()])))
                if not alts:
                    continue
                # weighed by the terms the group was bridged to, as the keyword retriever sees them
                weights.append(max(self.idf(t) for t in alts))
                groups.append(list(dict.fromkeys(alts + [t for w in words for t in tokenize(w)])))
            # letters without diacritics, so "Endō" is read whole (the bridge folds them too)
            for m in _LATIN_NAME_RE.finditer(fold_latin(question.strip())):
                name = m.group(0)
                parts = tuple(tuple(dict.fromkeys(a.lower() for a in g + words))
                              for g, words in bridge_groups_sourced(name, vocab))
                names.append(Name((name.lower(),), parts))
        else:
            from rag.crossling import english_alternatives

            # Each term with its English words in the documents, for English passages (a
            # Chinese question over English documents); none over Chinese-only documents. A
            # term the documents lack is weighed by its English words, as the keyword
            # retriever sees them (as an English question's groups are).
            english_words = english_alternatives(toks, self.vocab)
            groups = [[t] + alts for t, alts in zip(toks, english_words)]
            weights = [self.idf(t) if not alts or self.corpus is None or self.corpus.doc_freq(t)
                       else max(self.idf(a) for a in alts) for t, alts in zip(toks, english_words)]
            english_of = dict(zip(toks, english_words))
            for w in posseg().cut(q):
                word = w.word.strip().lower()
                if len(word) >= 2 and (w.flag in ENTITY_TAGS) and word not in cues:
                    names.append(Name((word, *english_of.get(word, [])[:1])))
        # codes ("M114", "G4") whole, other numbers but years as they are
        names += [Name((c.lower(),)) for c in _CODE_RE.findall(q)]
        names += [Name((n,)) for n in _NUMBER_RE.findall(q) if not _YEAR_RE.fullmatch(n)]
        return Question(question, english, expected_kind(question), groups, weights, names,
                        set(_YEAR_RE.findall(q)))

    # ---- passage side --------------------------------------------------
    def features(self, q: Question, hits: list[Hit], i: int) -> dict[str, float]:
        from rag.tokens import tokenize

        h = hits[i]
        text = f"{h.chunk.heading} {h.chunk.text}"
        simp = to_simplified(text).lower()
        toks = set(tokenize(text))
        total = sum(q.weights) or 1.0

        def coverage(tokens: set[str]) -> float:
            return sum(w for g, w in zip(q.groups, q.weights) if any(t in tokens for t in g)) / total

        best_cov, best_span = 0.0, (0, 0)
        for (a, b), sent in sentence_tokens(h.chunk.text):
            c = coverage(sent)
            if c > best_cov:
                best_cov, best_span = c, (a, b)
        dense = [x.dense_score for x in hits[:TOP_PASSAGES] if x.dense_score is not None]
        kws = [x.keyword_score or 0.0 for x in hits[:TOP_PASSAGES]]
        years = set(_YEAR_RE.findall(simp))
        name_hits = names_held(q, simp)
        return {
            "dense": h.dense_score if h.dense_score is not None else (min(dense) if dense else 0.0),
            "dense_gap": (h.dense_score or 0.0) - max(dense) if dense and h.dense_score is not None else -0.1,
            "keyword": (h.keyword_score or 0.0) / max(kws) if max(kws, default=0.0) > 0 else 0.0,
            "inv_rank": 1.0 / (i + 1),
            "coverage": coverage(toks),
            "sentence_coverage": best_cov,
            "kind_asked": float(q.kind is not None),
            "kind_in_sentence": float(has_kind(q.kind, h.chunk.text, *best_span, broad=True)),
            "kind_in_passage": float(has_kind(q.kind, h.chunk.text, broad=True)),
            "names_asked": float(bool(q.names)),
            "name_coverage": name_hits / len(q.names) if q.names else 1.0,
            "year_conflict": float(bool(q.years and years and not (q.years & years))),
            "crosslingual": float(crosslingual(q, text)),
        }

    def _dense_comparable(self) -> bool:
        """Cosines of another embedding model are on another scale: with one, the dense
        features say nothing the model learned (they count as average)."""
        fitted = self.model.get("embed_model")
        embedder = getattr(self.corpus, "embedder", None) if self.corpus is not None else None
        return fitted is None or embedder is None or embedder.name == fitted

    def score(self, feats: dict[str, float]) -> float:
        m = self.model
        skip = set() if self._dense_comparable() else {"dense", "dense_gap"}
        z = m["intercept"] + sum(
            c * (feats[name] - mu) / sd
            for name, c, mu, sd in zip(m["features"], m["coef"], m["mean"], m["scale"]) if name not in skip
        )
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def check(self, question: str, hits: list[Hit]) -> Support:
        if not hits:
            return Support(False, 0.0, [], [], None, "nothing retrieved")
        q = self.question(question)
        feats = [self.features(q, hits, i) for i in range(min(TOP_PASSAGES, len(hits)))]
        scores = [self.score(f) for f in feats]
        # a passage in the question's language is judged against one threshold, a passage
        # read through the bridge (the other language) against the other
        thresholds = [self.thresholds[pair_key(f)] for f in feats]
        passing = sorted((i for i, s in enumerate(scores) if s >= thresholds[i]), key=lambda i: -scores[i])
        best = max(scores)
        reason = "" if passing else f"no passage scores above its threshold (best {best:.2f})"
        return Support(bool(passing), best, passing, scores, q.kind, reason, q)


def load_fitted(path: Path, features: list[str], fit_script: str) -> dict:
    """A fitted model file (rag/data/*.json), checked to be fitted for these features."""
    model = json.loads(Path(path).read_text(encoding="utf-8"))
    if model.get("features") != features:
        raise RuntimeError(f"{path}: fitted for features {model.get('features')}, code has {features}; "
                           f"rerun {fit_script}")
    return model


def load_model(path: Path = MODEL_FILE) -> dict:
    return load_fitted(path, FEATURES, "scripts/fit_gate.py")


def crosslingual(q: Question, text: str) -> bool:
    """Whether the passage is in the other language than the question (English question,
    Chinese passage or the reverse): its terms are then matched through the dictionary
    bridge, which covers fewer of them."""
    return q.english != (detect_lang(text) == "en")


def pair_key(features: dict[str, float]) -> str:
    """The threshold a passage is judged against, by its features: "crosslingual" or
    "same_language"."""
    return "crosslingual" if features["crosslingual"] else "same_language"


def names_held(q: Question, simp: str) -> float:
    """How many of the names and numbers the question mentions the (simplified, lower-cased)
    text holds (a multi-word Latin name held in part counts its share)."""
    return sum(n.share(simp) for n in q.names)
