"""Extractive answers: the best-supported sentences of the retrieved chunks,
each cited, or a plain refusal when the documents do not support an answer.

No model generates text here, so it works with nothing but the embedder;
Chinese output follows the question's script.
"""
from __future__ import annotations

from typing import Iterator

from rag.answering.gate import AnswerabilityGate, Question, Support, has_kind, sentence_tokens
from rag.answering.prompts import LEAD_EN_QUOTED, LEADS, refusal_text
from rag.lang import to_script, to_simplified
from rag.text import CJK_RE
from rag.types import Answer, Citation, Hit


class ExtractiveAnswerer:
    """Builds an answer from retrieved sentences; refuses on weak support."""

    mode = "extractive"
    llm = None  # no model: follow-ups are rewritten by rule, questions are not translated

    def translate(self, question: str) -> str | None:
        return None

    def __init__(self, gate: AnswerabilityGate | None = None, max_sentences: int = 2):
        self.gate = gate or AnswerabilityGate()
        self.max_sentences = max_sentences

    def support(self, question: str, hits: list[Hit]) -> Support:
        """The gate's verdict (gate.py): answerable or not, and which passages answer."""
        return self.gate.check(question, hits)

    def pick_spans(self, question: str, hits: list[Hit], allowed: list[int],
                   q: Question | None = None) -> list[tuple[int, int, int]]:
        """(hit index, start, end) of the sentences that answer, from the passages the gate
        passed (`allowed`, best first): the sentence that covers most of the question and
        holds the kind of thing it asks for (a number, a date, a name) leads; a second one
        only when it is nearly as good. Document order within a passage. The LLM answerer
        builds its passages around these. `q`: the gate's reading of the question
        (`Support.question`), so it is not read twice."""
        q = q or self.gate.question(question)
        total = sum(q.weights) or 1.0
        order = {hi: n for n, hi in enumerate(allowed)}
        scored = []
        for hi in allowed:
            if not 0 <= hi < len(hits):
                continue
            text = hits[hi].chunk.text
            spans, sent_toks = zip(*sentence_tokens(text)) if text else ((), ())
            # A term in every sentence of the passage (its subject, often replaced by a
            # pronoun where the answer is) does not tell the sentences apart; a term in
            # one sentence does.
            spread = [sum(any(t in toks for t in g) for toks in sent_toks) or 1 for g in q.groups]
            for (a, b), toks in zip(spans, sent_toks):
                cover = sum(w / n for g, w, n in zip(q.groups, q.weights, spread) if any(t in toks for t in g)) / total
                kind = 0.3 if has_kind(q.kind, text, a, b) else 0.0
                names = sum(any(x in to_simplified(text[a:b]).lower() for x in alts) for alts in q.names)
                score = cover + kind + 0.1 * names + 0.1 / (order[hi] + 1)
                scored.append((score, hi, a, b))
        scored.sort(key=lambda s: -s[0])
        picked: list[tuple[int, int, int]] = []
        first_english = False
        for score, hi, a, b in scored:
            if picked and (score <= 0.15 or score < 0.5 * scored[0][0]):
                break  # a second sentence only when it is nearly as relevant
            if picked and first_english and CJK_RE.search(hits[hi].chunk.text[a:b]):
                continue  # an answer found in the asker's language is not padded with another's
            if not picked:
                first_english = q.english and not CJK_RE.search(hits[hi].chunk.text[a:b])
            picked.append((hi, a, b))
            if len(picked) >= self.max_sentences:
                break
        first = picked[:1]
        rest = sorted(picked[1:])
        return first + rest

    def _pick_sentences(self, question: str, hits: list[Hit], sup: Support) -> list[tuple[int, str]]:
        """(hit index, sentence) pairs of `pick_spans`."""
        spans = self.pick_spans(question, hits, sup.passing, sup.question)
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
