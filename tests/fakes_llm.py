"""Deterministic stand-ins for the LLM and the extractive answerer (no model, no threads)."""
from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from rag.types import Answer, Chunk, Citation, Hit


class ScriptedLLM(CustomLLM):
    """Replies with the next scripted text on each call; records the prompts it saw.
    Streams a reply in small pieces (3 characters) like a tokenizer would."""

    _replies: list[str] = PrivateAttr(default_factory=list)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _kwargs: list[dict] = PrivateAttr(default_factory=list)

    def __init__(self, replies: list[str], **kw: Any):
        super().__init__(**kw)
        self._replies = list(replies)
        self._prompts = []
        self._kwargs = []

    @property
    def prompts(self) -> list[str]:
        return self._prompts

    @property
    def calls(self) -> int:
        return len(self._prompts)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=256, model_name="scripted")

    def _next(self, prompt: str, kwargs: dict) -> str:
        self._prompts.append(prompt)
        self._kwargs.append(kwargs)
        if not self._replies:
            raise AssertionError("ScriptedLLM called more times than scripted")
        return self._replies.pop(0)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next(prompt, kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._next(prompt, kwargs)

        def gen():
            acc = ""
            for i in range(0, len(text), 3):
                delta = text[i : i + 3]
                acc += delta
                yield CompletionResponse(text=acc, delta=delta)

        return gen()


class BrokenLLM(ScriptedLLM):
    """Every call fails like an unreachable server."""

    def _next(self, prompt: str, kwargs: dict) -> str:
        self._prompts.append(prompt)
        raise ConnectionError("connection refused")


class FakeExtractive:
    """Same protocol as the core's ExtractiveAnswerer; marks its answers so tests can tell."""

    mode = "extractive"
    llm = None

    def __init__(self):
        self.calls = 0

    def translate(self, question: str) -> str | None:
        return None

    def answer(self, question: str, hits: list[Hit], lang: str) -> Answer:
        self.calls += 1
        h = hits[0]
        return Answer(
            text=f"EXTRACTIVE {h.chunk.text}[1]",
            refused=False,
            citations=[Citation(1, h.chunk.source, h.chunk.text, h.chunk.start, h.chunk.end, h.chunk.id)],
            question=question,
            lang=lang,
            mode="extractive",
            hits=hits,
        )

    def stream(self, question, hits, lang):
        ans = self.answer(question, hits, lang)
        yield ans.text
        yield ans

    def support(self, question, hits):
        """Every passage answers (tests of the LLM path, not of the gate)."""
        from rag.answering.gate import Support

        return Support(bool(hits), 1.0 if hits else 0.0, list(range(min(3, len(hits)))))

    def pick_spans(self, question, hits, allowed, q=None, scores=None):
        return []


def hit(text: str, n: int, start: int = 0) -> Hit:
    # scores on the real retriever's scale (e5 cosines, BM25), as the gate sees retrieved passages
    return Hit(
        chunk=Chunk(id=f"c{n}", source="doc.txt", text=text, start=start, end=start + len(text)),
        score=1.0 / n,
        rank=n,
        dense_score=0.86 - 0.01 * n,
        keyword_score=12.0 / n,
    )


SHANGHAI = "今年8月，上海推出《上海市加快推動“AI+制造”發展的實施方案》，計劃推動3000家制造業企業實現智能化應用。"
STATE_COUNCIL = "今年8月，國務院印發《關于深入實施“人工智能+”行動的意見》，將“人工智能+制造”列為重點之一。"
WENZHOU = "今年9月，溫州市人工智能局正式揭牌，這是全國首個市級人工智能管理機構。"


def article_hits() -> list[Hit]:
    return [hit(SHANGHAI, 1, 100), hit(STATE_COUNCIL, 2, 10), hit(WENZHOU, 3, 300)]
