"""LLM answers: grounded in the retrieved passages, cited [n], in the asker's language.

Flow of `LLMAnswerer.answer/stream(question, hits, lang)`:

1. The extractive answerer's gate (`support`) decides whether the passages hold
   what the question asks for; if not, the reply is the localised refusal and
   the model is not called. Otherwise it picks the evidence sentences
   (`pick_spans`).
2. The model reads numbered passages [1]..[k] in <passages>...</passages>:
   for Chinese questions at most `MAX_PASSAGES` windows of `PASSAGE_CHARS`
   starting at the evidence; for English questions only the evidence
   sentences, in simplified script, with people's names in pinyin and 亿/万
   amounts in English in place of the Chinese. The system prompt (in the question's
   language) says passages are data and instructions inside them are ignored;
   the model answers in 1-3 sentences with [n] after each fact, or outputs the
   token NO_ANSWER.
3. The reply is checked (`check_answer`): the answer must cite at least one
   passage, only passages 1..k, say more than the citation, be in the
   question's language, state no number absent from the passages and the
   question, and overlap the cited passages when it has anything checkable
   (numbers, Chinese text, Latin names). A rejected reply is retried once with
   the fault named (same chat, so the prompt prefix is in llama.cpp's cache).
4. An English answer is followed by the evidence sentences translated
   (`QUOTE_LEAD`): the small model's own answer is short but sometimes vague,
   its translation keeps the facts. Evidence that is English already (an
   English document) is quoted as written (`QUOTE_LEAD_EN`), not translated.
   Each passage's translation is checked alone
   and shown when complete; a name the model read in pinyin is followed by its
   written form ("En Boli (恩波利)", `names_as_written`), a name it left in
   Chinese by its pinyin, and a name of the evidence the translation does not
   verifiably carry by its written form ("western Pacific (西北太平洋区)",
   `fidelity.keep_written_terms`). A Chinese answer must say what the picked
   evidence sentences say (`from_evidence`: most of what it adds to the
   question is found in them); it is then followed by those sentences quoted
   (`QUOTE_LEAD_ZH`), else the extractive answer replaces it (the 1.5B model
   often names another entity or figure of its passages; the picker is right
   far more often).
5. Before the model answers, it judges the evidence (`judge.AnswerJudge`, its own
   llama.cpp context): when its first token's Yes/No logits say the sentences do not
   state what the question asks for (below the fitted threshold of rag/data/judge.json),
   the reply is the refusal. The gate cannot tell an on-topic passage that lacks the
   asked fact from one that states it; the model reads the sentence.
6. When the model says NO_ANSWER although the gate found evidence (measured
   on the three eval sets: 7 of 10 such refusals were wrong), or its reply
   fails twice, the evidence answers: translated for English (over Chinese
   evidence), the extractive answer otherwise, with a notice saying why.
7. Chinese answers are converted to the question's script with OpenCC.

Streaming: `stream()` yields text deltas as the model produces them (converted
to the question's script; a leading NO_ANSWER is held back and replaced by the
localised refusal) and then exactly one final `Answer`. The check runs when the
model has finished, so when the streamed text is rejected the final Answer
carries the corrected text: callers must show `Answer.text` in place of what
they streamed whenever the two differ (`Answer.notice` then says why).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rag.answering.checking import (
    check_answer,
    citations_for,
    cited_numbers,
    from_evidence,
    normalize_citations,
    script_stats,
    strip_citations,
)
from rag.answering.fidelity import keep_written_terms, romanise_left_names
from rag.answering.passages import (
    MAX_PASSAGES,
    build_messages,
    names_as_written,
    passage_for,
    passage_window,
    retry_messages,
)
from rag.answering.prompts import (
    NO_ANSWER,
    NOTICE_ANSWERING_IN,
    NOTICE_FALLBACK,
    NOTICE_JUDGED,
    NOTICE_LLM_LOAD_FAILED,
    NOTICE_NO_LLM,
    NOTICE_TRANSLATED,
    QUOTE_LEAD,
    QUOTE_LEAD_EN,
    QUOTE_LEAD_ZH,
    REASON_LLM_ERROR,
    REFUSAL,
    TRANSLATE_FOLLOW,
    reason_text,
)
from rag.answering.judge import AnswerJudge
from rag.answering.translate import translate_query
from rag.guard import hostile, is_meta_question, meta_refusal, quote_passage
from rag.lang import known_lang, to_script
from rag.text import CJK_RE
from rag.types import Answer, Hit, UserError

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.answering.extractive import ExtractiveAnswerer
    from rag.settings import Settings

# Quoted titles and parentheses: a Chinese title inside an English answer is not a sign
# that the model is copying the passage.
_QUOTED_RE = re.compile(r"《[^》]*》|「[^」]*」|“[^”]*”|\"[^\"]*\"|\([^)]*\)|（[^）]*）")

def _cite_end(text: str, n: int) -> str:
    """"He was born in Florence ." -> "He was born in Florence [2]." ("" for no text)."""
    text = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split()))
    body = text.rstrip(".!?")
    return f"{body} [{n}]{text[len(body):]}" if body else ""


class Answerer(Protocol):
    mode: str
    llm: LLM | None  # the model follow-up questions are rewritten with, if any

    def translate(self, question: str) -> str | None:
        """The question in Chinese for retrieval, or None (no model to translate with)."""
        ...

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer: ...

    def stream(self, question: str, hits: list[Hit], lang: str) -> Iterator[str | Answer]: ...


@dataclass
class Selection:
    """What `LLMAnswerer.select` gives the model."""

    given: list[Hit]  # passages [1]..[k]
    answerable: bool  # False: refuse without asking the model
    texts: list[str]  # what the model reads of each passage
    evidence: list[tuple[int, str]]  # (passage number, sentence) picked by the extractive answerer


@dataclass
class Timing:
    """Timings of the last answer (seconds), for the benchmark."""

    first_token: float | None = None
    total: float = 0.0
    attempts: int = 0
    fallback: bool = False
    judge: float | None = None  # the judge's score (logit Yes - No), when it ran
    judge_seconds: float | None = None  # how long the judgement took


class _Shown:
    """What has been streamed to the caller, and when the first of it came."""

    def __init__(self, started: float, timing: Timing):
        self.started = started
        self.timing = timing
        self.text = ""

    def emit(self, text: str, *, only_if_nothing_shown: bool = False) -> Iterator[str]:
        if not text or (only_if_nothing_shown and self.text):
            return
        if self.timing.first_token is None:
            self.timing.first_token = time.perf_counter() - self.started
        self.text += text
        yield text

    def finish(self, answer: Answer) -> Answer:
        self.timing.total = time.perf_counter() - self.started
        if self.timing.first_token is None:
            self.timing.first_token = self.timing.total
        return answer


class _OnFirstUse:
    """A value built by `factory` once, on first use, under a lock (the translator's and the
    judge's llama.cpp contexts: loading one costs seconds and memory, so only when needed).
    A factory that raises leaves the value None and `error` saying why."""

    def __init__(self, value: Any = None, factory: Callable[[], Any] | None = None):
        self._value, self._factory = value, factory
        self._lock = threading.Lock()
        self.error = ""

    def get(self) -> Any:
        with self._lock:
            if self._value is None and self._factory is not None:
                factory, self._factory = self._factory, None
                try:
                    self._value = factory()
                except Exception as exc:  # the caller goes on without it
                    self.error = f"{type(exc).__name__}: {exc}"
            return self._value


class LLMAnswerer:
    """Answers with an LLM, checked; falls back to `extractive` (same protocol), whose gate
    (`support`) and span picker (`pick_spans`) decide what the model is given."""

    mode = "llm"

    def __init__(self, llm: LLM, extractive: ExtractiveAnswerer, *, max_tokens: int = 200,
                 max_passages: int = MAX_PASSAGES, translator: LLM | None = None,
                 translator_factory: Callable[[], LLM | None] | None = None,
                 judge: AnswerJudge | None = None,
                 judge_factory: Callable[[], AnswerJudge | None] | None = None):
        self.llm = llm
        self.extractive = extractive
        self.max_tokens = max_tokens
        self.max_passages = max_passages
        self.last_timing = Timing()
        self._translator = _OnFirstUse(translator, translator_factory)
        self._judge = _OnFirstUse(judge, judge_factory)

    def translate(self, question: str) -> str | None:
        """The question in simplified Chinese for retrieval (`translate_query`), on the
        translator context (built on first use), or None."""
        translator = self._translator.get()  # no translator: retrieval goes on without it
        return translate_query(question, translator)

    @property
    def judge(self) -> AnswerJudge | None:
        """The answerability judge (built on first use on its own context), or None: no
        judge for this backend, or its fitted file does not fit (`judge_notice` says why)."""
        return self._judge.get()  # a factory that fails: answers go on, judged by the gate alone

    @property
    def judge_notice(self) -> str:
        """Why the judge is off, when its factory failed; else empty."""
        return f"answerability judge off: {self._judge.error}" if self._judge.error else ""

    # -- public protocol

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer:
        final: Answer | None = None
        for item in self.stream(question, hits, lang):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(self, question: str, hits: list[Hit], lang: str) -> Iterator[str | Answer]:
        lang = known_lang(lang)
        started = time.perf_counter()
        self.last_timing = timing = Timing()
        out = _Shown(started, timing)
        if is_meta_question(question):
            # about the assistant's own instructions, not the documents: no model call
            text = meta_refusal(lang)
            yield from out.emit(text)
            yield out.finish(self._make(question, hits, lang, text, refused=True))
            return
        # a passage that tries to instruct the model is not given to it (rag/guard.py); the
        # Answer still lists every hit, so the page shows what retrieval found
        safe = [h for h in hits if not hostile(h.chunk.text)]
        # The gate runs here, outside the `try` below on purpose: that block's broad except
        # turns a model failure into the extractive answer, but a gate failure must never let
        # the model (or anything) answer without the gate's typed decision. A gate error
        # propagates to the caller, as it does in extractive mode (the same gate).
        sel = self.select(question, safe, lang)
        given, texts = sel.given, sel.texts
        if not given or not sel.answerable:
            yield from out.emit(REFUSAL[lang])
            yield out.finish(self._make(question, hits, lang, REFUSAL[lang], refused=True))
            return
        messages = build_messages(question, given, lang, texts)
        try:
            judge = self.judge if sel.evidence else None
            if judge is not None:
                t_judge = time.perf_counter()
                verdict = judge.judge(question, [s for _, s in sel.evidence], english=lang == "en")
                timing.judge, timing.judge_seconds = verdict.score, time.perf_counter() - t_judge
                if not verdict.answers:
                    yield from out.emit(REFUSAL[lang])
                    final = self._make(question, hits, lang, REFUSAL[lang], refused=True)
                    final.notice = NOTICE_JUDGED.format(score=verdict.score, threshold=verdict.threshold)
                    yield out.finish(final)
                    return
            timing.attempts = 1
            raw = yield from self._emit_model(out, self._stream_llm(messages), lang, hold=True)
            check = check_answer(raw, given, question, lang, texts)
            model_refused = check.refused and bool(sel.evidence)
            if not check.ok:
                timing.attempts = 2
                raw2 = self._complete_llm(retry_messages(messages, raw.strip(), check.reason, lang, len(given)))
                check2 = check_answer(raw2, given, question, lang, texts)
                check = check2 if check2.ok else check
                model_refused = check2.ok and check2.refused and bool(sel.evidence)
            if check.ok and not check.refused and not model_refused:
                text = check.text
                if lang == "en" and sel.evidence and not _needs_translation(sel):
                    # English evidence (an English document) is quoted as written: a
                    # "translation" into the language it is in only rewords it
                    quote = QUOTE_LEAD_EN + "".join(f"{s}[{n}]" for n, s in sel.evidence)
                    yield from out.emit(quote)
                    text = f"{text}{quote}"
                elif lang == "en" and sel.evidence:
                    # The answer, then the evidence sentence translated: the small model's own
                    # answer is short and to the point but sometimes vague, its translation of
                    # the sentence keeps every fact (measured in docs/ARCHITECTURE.md).
                    quote = yield from self._translate_evidence(out, sel, given, question, messages, raw,
                                                                lead=QUOTE_LEAD)
                    if quote:
                        text = f"{text}{QUOTE_LEAD}{quote}"
                elif lang != "en" and sel.evidence:
                    if not from_evidence(check.text, question, [s for _, s in sel.evidence]):
                        # The model named another entity or figure of its passages than the
                        # evidence sentence the picker chose (the picker is right far more
                        # often): the extractive answer replaces it.
                        final = self._fallback(question, hits, lang, "off_evidence", safe=safe)
                        timing.fallback = True
                        yield out.finish(final)
                        return
                    # The short answer, then the evidence sentences it was read from, quoted.
                    quote = QUOTE_LEAD_ZH + "".join(f"{to_script(s, lang)}[{n}]" for n, s in sel.evidence)
                    yield from out.emit(quote)
                    text = f"{text}{quote}"
                final = self._make(question, hits, lang, to_script(text, lang), refused=False, given=given)
                yield out.finish(final)
                return
            if check.ok and check.refused and not model_refused:
                yield from out.emit(REFUSAL[lang], only_if_nothing_shown=True)
                yield out.finish(self._make(question, hits, lang, REFUSAL[lang], refused=True))
                return
            # The model refused although the gate found passages with what the question asks
            # for (measured: 7 of 10 such refusals were wrong), or its answer failed the check
            # twice: answer from the evidence instead, translated for English questions.
            reason = "model_refused" if model_refused else check.reason
            if lang == "en" and sel.evidence and _needs_translation(sel):
                # The rejected answer is not left in the chat the translation continues: the
                # model copied its invented facts into the translation ("the theme song of the
                # 2008 Beijing Olympics", "early 1st century CE"), the translation then failed
                # the same check and the reply fell back to the Chinese quote.
                quote = yield from self._translate_evidence(out, sel, given, question, messages, NO_ANSWER)
                if quote:
                    final = self._make(question, hits, lang, quote, refused=False, given=given)
                    final.notice = NOTICE_TRANSLATED.format(reason=reason_text(reason, "en"))
                    yield out.finish(final)
                    return
            final = self._fallback(question, hits, lang, reason, safe=safe)
        except UserError:
            raise
        except Exception as exc:  # the backend failed (server down, model error): stay useful
            final = self._fallback(question, hits, lang, REASON_LLM_ERROR.format(error=f"{type(exc).__name__}: {exc}"),
                                   raw_reason=True, safe=safe)
        timing.fallback = True
        yield from out.emit(final.text, only_if_nothing_shown=True)
        yield out.finish(final)

    def _emit_model(self, out: _Shown, deltas: Iterator[str], lang: str, *, hold: bool = False):
        """Stream model deltas through `out` (in the question's script); returns the raw text.
        `hold`: keep text back while it could still be the NO_ANSWER token, and stop there."""
        raw = ""
        deciding = hold
        for delta in deltas:
            raw += delta
            if deciding:
                lead = raw.lstrip()
                if not lead or NO_ANSWER.startswith(lead.upper()):
                    continue  # maybe NO_ANSWER: hold
                if lead.upper().startswith(NO_ANSWER):
                    break  # a refusal: stop generating
                deciding = False
                delta = raw
            if delta:
                yield from out.emit(to_script(delta, lang))
            if self._hopeless(raw, lang):
                break  # e.g. copying the Chinese passage for an English question
        return raw

    def _translate_evidence(self, out: _Shown, sel: Selection, given: Sequence[Hit], question: str,
                            messages: list[Any], answer: str, lead: str = ""):
        """Translate the evidence into English: at most two passages, one follow-up turn each in
        the same chat (llama.cpp keeps the system prompt and examples cached for the next
        question). Each passage's translation is checked on its own, cited [n], gets the names
        the model read romanised followed by their written form (`names_as_written`) and is
        shown when complete, after `lead`; returns the accepted translations joined, or ""."""
        from llama_index.core.llms import ChatMessage

        chat = [*messages, ChatMessage(role="assistant", content=answer.strip() or NO_ANSWER)]
        parts: list[str] = []
        self.last_timing.attempts += 1
        for n in list(dict.fromkeys(m for m, _ in sel.evidence))[:2]:
            # sel.texts[n - 1] is passage n's evidence sentences as the model read them
            chat.append(ChatMessage(role="user", content=TRANSLATE_FOLLOW.format(
                n=n, text=quote_passage(sel.texts[n - 1]))))
            raw = self._collect(self._stream_llm(chat), "en")
            chat.append(ChatMessage(role="assistant", content=raw))
            # it translates passage n, whatever number the model wrote
            piece = _cite_end(strip_citations(normalize_citations(raw)), n)
            if not piece:
                continue
            check = check_answer(piece, given, question, "en", sel.texts)
            if not check.ok or check.refused:
                continue  # e.g. a number the passages do not hold: this passage is not shown
            # checked before the written names are added: they are not the model's words
            sources = [to_script(s, "zh-Hans") for m, s in sel.evidence if m == n]
            piece = romanise_left_names(names_as_written(check.text, "".join(sources)))
            # then each name of the evidence the translation does not verifiably carry
            # (rendered freely or dropped) is kept as written beside it (fidelity.py)
            shown = [answer.strip()] if answer.strip() != NO_ANSWER else []
            piece = keep_written_terms(piece, sources, question, context=[*shown, *parts])
            yield from out.emit((lead if not parts else " ") + piece)
            parts.append(piece)
        return " ".join(parts)

    def _collect(self, deltas: Iterator[str], lang: str) -> str:
        """The model's whole reply, not streamed (cut short like `_emit_model` when hopeless)."""
        raw = ""
        for delta in deltas:
            raw += delta
            if self._hopeless(raw, lang):
                break
        return raw

    # -- internals

    def select(self, question: str, hits: list[Hit], lang: str = "en") -> Selection:
        """The passages to give the model and whether to ask it at all. The gate
        (`extractive.support`, the same decision as in extractive mode) refuses an unsupported
        question without an LLM call; the passages holding the evidence sentences it picks
        (`pick_spans`) go first, each shown as a window starting at that evidence, then the
        other passages the gate passed, then the rest."""
        hits = list(hits)
        order = list(range(len(hits)))
        spans: list[tuple[int, int, int]] = []
        if hits:
            sup = self.extractive.support(question, hits)
            if not sup.answerable:
                return Selection([], False, [], [])
            passing = [i for i in sup.passing if 0 <= i < len(hits)]
            picked = self.extractive.pick_spans(question, hits, passing, q=sup.question, scores=sup.scores)
            spans = [sp for sp in picked if 0 <= sp[0] < len(hits)]
            order = list(dict.fromkeys([hi for hi, _, _ in spans] + passing + order))
        if lang == "en" and spans:
            # English: only the evidence sentences. The model translates what it reads, so
            # less text means fewer stray facts, and a short prompt is a fast one.
            order = list(dict.fromkeys(hi for hi, _, _ in spans))
            texts = [passage_for(lang, "".join(hits[i].chunk.text[a:b] for hi, a, b in spans if hi == i))
                     for i in order]
        else:
            order = order[: self.max_passages]
            texts = [passage_window(hits[i].chunk.text, [(a, b) for hi, a, b in spans if hi == i])
                     for i in order]
            texts = [passage_for(lang, t) for t in texts]
        evidence = [(order.index(hi) + 1, hits[hi].chunk.text[a:b]) for hi, a, b in spans if hi in order]
        return Selection([hits[i] for i in order], True, texts, evidence)

    def _stream_llm(self, messages: list[Any]) -> Iterator[str]:
        gen = self.llm.stream_chat(messages, max_tokens=self.max_tokens)
        try:
            for chunk in gen:
                if chunk.delta:
                    yield chunk.delta
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()

    def _complete_llm(self, messages: list[Any]) -> str:
        return self.llm.chat(messages, max_tokens=self.max_tokens).message.content or ""

    @staticmethod
    def _hopeless(raw: str, lang: str) -> bool:
        """Stop early when an English answer is plainly Chinese (checked after 40 chars)."""
        if lang != "en" or len(raw) < 40:
            return False
        cjk, latin = script_stats(_QUOTED_RE.sub(" ", strip_citations(raw)))
        return cjk > 2 * max(latin, 1) and cjk >= 20

    def _make(self, question: str, hits: list[Hit], lang: str, text: str, *, refused: bool,
              given: Sequence[Hit] = ()) -> Answer:
        return Answer(
            text=text,
            refused=refused,
            citations=[] if refused else citations_for(text, given),
            question=question,
            lang=lang,
            mode="llm",
            hits=list(hits),
        )

    def _fallback(self, question: str, hits: list[Hit], lang: str, reason: str, *,
                  raw_reason: bool = False, safe: list[Hit] | None = None) -> Answer:
        # the extractive answer reads the same passages the model was given (not hostile ones)
        ans = self.extractive.answer(question, hits if safe is None else safe, lang)
        ans.hits = list(hits)
        why = reason if raw_reason else reason_text(reason, "en")
        notice = NOTICE_FALLBACK.format(reason=why)
        ans.notice = f"{ans.notice}; {notice}" if ans.notice else notice
        return ans


def make_answerer(settings: Settings, extractive: ExtractiveAnswerer) -> tuple[Answerer, str]:
    """(answerer, notice): the LLM answerer when an LLM is available, else the extractive
    one and a one-line notice saying why (shown once by the CLI/UI)."""
    from rag.llm import build_llm, llm_status

    if settings.llm == "extractive":
        return extractive, ""
    try:
        llm = build_llm(settings)
    except UserError as exc:
        return extractive, NOTICE_NO_LLM.format(why=exc)
    except Exception as exc:  # a broken llama-cpp build must not stop the assistant
        return extractive, NOTICE_NO_LLM.format(why=NOTICE_LLM_LOAD_FAILED.format(error=f"{type(exc).__name__}: {exc}"))
    if llm is None:
        _, status = llm_status(settings)
        return extractive, NOTICE_ANSWERING_IN.format(status=status)
    from rag.llm import MODEL_LABEL, build_judge, build_translator

    def judge_factory() -> AnswerJudge | None:
        model = build_judge(settings)
        return None if model is None else AnswerJudge.load(model, model_label=MODEL_LABEL)

    return LLMAnswerer(llm, extractive, max_tokens=min(settings.llm_max_tokens, 200),
                       translator_factory=lambda: build_translator(settings),
                       judge_factory=judge_factory), ""


def _needs_translation(sel: Selection) -> bool:
    """Whether the evidence an English answer shows must be translated: it holds Chinese
    text. English evidence (from an English document) is quoted as it is written."""
    return any(CJK_RE.search(s) for _, s in sel.evidence)
