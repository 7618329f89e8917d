"""Extractive answers: the best-supported sentences of the retrieved chunks,
each cited, or a plain refusal when the documents do not support an answer.

No model generates text here, so it works with nothing but the embedder;
Chinese output follows the question's script. Which sentence answers is decided
by a pairwise logistic model over sentence signals, fitted by
`scripts/fit_picker.py` on the development sets and stored in
`rag/data/picker.json`.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from rag.answering.gate import (
    AnswerabilityGate,
    Question,
    Support,
    _cues,
    has_kind,
    load_fitted,
    names_held,
    question_words,
    sentence_tokens,
)
from rag.answering.prompts import LEAD_EN_QUOTED, LEADS, refusal_text
from rag.lang import to_script, to_simplified
from rag.text import CJK_RE, DATA
from rag.types import Answer, Citation, Hit

PICKER_FILE = DATA / "picker.json"
SENTENCE_FEATURES = [
    "cover_spread", "cover", "kind", "names", "gate", "inv_rank",
    "focus_chars", "bigrams", "first", "log_len",
]  # all sentence-level: a property of the question alone cancels out of a pairwise model
_CLAUSE_RE = re.compile(r"[，,；;：:。？?！!]")


def _blanked(text: str) -> str:
    """Simplified question text with its question words and (multi-character) frame words blanked."""
    text = to_simplified(text)
    for w in [c for c, _ in _cues("zh")] + sorted(question_words()["frame"]["zh"], key=len, reverse=True):
        if len(w) > 1:
            text = text.replace(w, " ")
    return text


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1) if CJK_RE.match(text[i]) and CJK_RE.match(text[i + 1])}


def question_bigrams(q: Question) -> set[str]:
    """Character pairs of the question's content (of an English question: of its bridged
    Chinese terms). Pairs across jieba's word boundaries count, so a phrase the sentence
    holds in the question's order scores even where the two sides are segmented
    differently (元详封北海王 is cut 元/详封/北海/王 in the question, 元详 in the text)."""
    if q.english:
        return set().union(*(_bigrams(t) for g in q.groups for t in g)) if q.groups else set()
    return _bigrams(_blanked(q.text))


def focus_chars(q: Question) -> set[str]:
    """The Chinese characters of the clause that asks (the one holding the question word,
    else the last): in "A 曾…建立 X 制度，但 A 的 X 于何时废除" the first clause sets the
    scene, the second asks. Characters, not words, so 废止 in a sentence still shares 废
    with the question's 废除. English questions: their bridged Chinese terms' characters."""
    from rag.tokens import STOPWORDS

    if q.english:
        return {c for g in q.groups for t in g for c in t if CJK_RE.match(c)}
    clauses = [c for c in _CLAUSE_RE.split(to_simplified(q.text)) if c.strip()]
    if not clauses:
        return set()
    cues = [c for c, _ in _cues("zh")]
    clause = ([c for c in clauses if any(cue in c for cue in cues)] or clauses)[-1]
    # one-character function words (的, 于, 是 …) say nothing about what is asked
    function = {w for w in question_words()["frame"]["zh"] if len(w) == 1} | {w for w in STOPWORDS if len(w) == 1}
    return {c for c in _blanked(clause) if CJK_RE.match(c) and c not in function}


def sentence_features(q: Question, text: str, span: tuple[int, int], toks: frozenset[str],
                      spread: list[int], n: int, rank: int, gate_score: float,
                      grams: set[str], fchars: set[str]) -> dict[str, float]:
    """Signals that sentence `n` (`span` of the passage `text`, search tokens `toks`) answers
    the question: how much of the question it covers (each term weighed by idf, and also
    divided by the number of the passage's sentences holding it, `spread`), whether it holds
    the kind of thing asked for and the names asked about, the gate's score of its passage
    and the passage's rank, the question's asking clause (characters) and phrases (character
    pairs) it holds, and its place and length."""
    a, b = span
    total = sum(q.weights) or 1.0
    sent = to_simplified(text[a:b]).lower()
    return {
        "cover_spread": sum(w / m for g, w, m in zip(q.groups, q.weights, spread) if any(t in toks for t in g)) / total,
        "cover": sum(w for g, w in zip(q.groups, q.weights) if any(t in toks for t in g)) / total,
        "kind": float(has_kind(q.kind, text, a, b)),
        "names": names_held(q, sent) / len(q.names) if q.names else 0.0,
        "gate": gate_score,
        "inv_rank": 1.0 / (rank + 1),
        "focus_chars": sum(c in sent for c in fchars) / len(fchars) if fchars else 0.0,
        "bigrams": sum(g in sent for g in grams) / len(grams) if grams else 0.0,
        "first": float(n == 0),
        "log_len": math.log(1 + b - a),
    }


def passage_sentences(q: Question, hits: list[Hit], hi: int, gate_score: float,
                      grams: set[str] | None = None, fchars: set[str] | None = None):
    """(start, end, features) of each sentence of hit `hi`."""
    grams = question_bigrams(q) if grams is None else grams
    fchars = focus_chars(q) if fchars is None else fchars
    text = hits[hi].chunk.text
    st = sentence_tokens(text) if text else ()
    # A term in every sentence of the passage (its subject, often replaced by a pronoun
    # where the answer is) does not tell the sentences apart; a term in one sentence does.
    spread = [sum(any(t in toks for t in g) for _, toks in st) or 1 for g in q.groups]
    return [(a, b, sentence_features(q, text, (a, b), toks, spread, n, hi, gate_score, grams, fchars))
            for n, ((a, b), toks) in enumerate(st)]


@lru_cache(maxsize=1)
def load_picker(path: Path = PICKER_FILE) -> dict:
    return load_fitted(path, SENTENCE_FEATURES, "scripts/fit_picker.py")


def sentence_score(model: dict, feats: dict[str, float]) -> float:
    """The model's linear score: a difference of two is the log-odds that one sentence answers
    rather than the other."""
    return sum(c * feats[n] / sd for n, c, sd in zip(model["features"], model["coef"], model["scale"]))


def answer_probabilities(scores: list[float], temperature: float) -> list[float]:
    """Softmax of the picker's scores over one question's candidate sentences: the chance
    that each is the one that answers (the temperature is fitted out of fold)."""
    if not scores:
        return []
    top = max(scores)
    w = [math.exp((s - top) / temperature) for s in scores]
    total = sum(w)
    return [x / total for x in w]


class ExtractiveAnswerer:
    """Builds an answer from retrieved sentences; refuses on weak support."""

    mode = "extractive"
    llm = None  # no model: follow-ups are rewritten by rule, questions are not translated

    def translate(self, question: str) -> str | None:
        return None

    def __init__(self, gate: AnswerabilityGate | None = None, max_sentences: int | None = None,
                 picker: dict | None = None):
        self.gate = gate or AnswerabilityGate()
        self._max_sentences = max_sentences  # None: the fitted file's
        self._picker = picker

    @property
    def picker(self) -> dict:
        """The fitted sentence picker, read at the first answer (scripts/fit_picker.py
        builds assistants before the file exists)."""
        if self._picker is None:
            self._picker = load_picker()
        return self._picker

    @property
    def max_sentences(self) -> int:
        return self._max_sentences or int(self.picker["max_sentences"])

    def support(self, question: str, hits: list[Hit]) -> Support:
        """The gate's verdict (gate.py): answerable or not, and which passages answer."""
        return self.gate.check(question, hits)

    def pick_spans(self, question: str, hits: list[Hit], allowed: list[int],
                   q: Question | None = None, scores: list[float] | None = None) -> list[tuple[int, int, int]]:
        """(hit index, start, end) of the sentences that answer, from the passages the gate
        passed (`allowed`, best first), ranked by the fitted picker (rag/data/picker.json).
        Its scores, divided by the fitted `temperature`, are a softmax over the candidates: the
        chance that each is the one that answers. Sentences are quoted best first until they
        hold the answer with the file's `coverage` (at most `max_sentences`), so a sure pick
        is quoted alone and an unsure one (typically an English question over Chinese text,
        whose terms the dictionary bridges loosely) with its runners-up. Document order after
        the first. The LLM
        answerer builds its passages around these. `q` and `scores`: the gate's reading of
        the question and its passage scores (`Support.question`, `Support.scores`), so the
        question is not read twice."""
        if q is None or scores is None:
            sup = self.gate.check(question, hits)
            q, scores = q or sup.question, sup.scores
        if q is None:
            return []
        grams, fchars = question_bigrams(q), focus_chars(q)
        scored = []
        for hi in allowed:
            if not 0 <= hi < len(hits):
                continue
            gate_score = scores[hi] if hi < len(scores) else 0.0
            for a, b, feats in passage_sentences(q, hits, hi, gate_score, grams, fchars):
                scored.append((sentence_score(self.picker, feats), hi, a, b))
        # ties keep the passages' order, then the document's
        scored.sort(key=lambda s: -s[0])
        probs = answer_probabilities([sc for sc, *_ in scored], float(self.picker["temperature"]))
        coverage = float(self.picker["coverage"])
        picked: list[tuple[int, int, int]] = []
        held = 0.0  # the chance that the sentences picked so far hold the answer
        first_english = False
        for p, (score, hi, a, b) in zip(probs, scored):
            if picked and held >= coverage:
                break  # sure enough that the answer is quoted
            if picked and hi != picked[0][0] and \
                    names_held(q, to_simplified(hits[hi].chunk.text[a:b]).lower()) < len(q.names):
                continue  # another passage's sentence that is not about what the question names
            if picked and first_english and CJK_RE.search(hits[hi].chunk.text[a:b]):
                continue  # an answer found in the asker's language is not padded with another's
            if not picked:
                first_english = q.english and not CJK_RE.search(hits[hi].chunk.text[a:b])
            picked.append((hi, a, b))
            held += p
            if len(picked) >= self.max_sentences:
                break
        first = picked[:1]
        rest = sorted(picked[1:])
        return first + rest

    def _pick_sentences(self, question: str, hits: list[Hit], sup: Support) -> list[tuple[int, str]]:
        """(hit index, sentence) pairs of `pick_spans`."""
        spans = self.pick_spans(question, hits, sup.passing, sup.question, sup.scores)
        return [(hi, hits[hi].chunk.text[a:b]) for hi, a, b in spans]

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer:
        sup = self.support(question, hits)
        if not sup.answerable:
            return Answer(refusal_text(lang), True, [], question, lang=lang, mode=self.mode, hits=hits)
        picked = self._pick_sentences(question, hits, sup)
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
        lead = LEADS.get(lang, LEADS["en"])
        if lang == "en" and any(CJK_RE.search(sent) for _, sent in picked):
            lead = LEAD_EN_QUOTED
        sep = " " if lang == "en" else ""
        text = lead + (" " if lang == "en" else "") + sep.join(parts)
        return Answer(text, False, citations, question, lang=lang, mode=self.mode, hits=hits)

    def stream(self, question: str, hits: list[Hit], lang: str) -> Iterator[str | Answer]:
        ans = self.answer(question, hits, lang)
        yield ans.text
        yield ans
