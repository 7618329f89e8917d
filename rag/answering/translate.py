"""Query translation: an English question in simplified Chinese, for retrieval over
Chinese documents, with the bundled model (one short greedy call, prompt in prompts.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.answering.checking import script_stats
from rag.answering.prompts import TRANSLATE_EXAMPLES, TRANSLATE_SYSTEM
from rag.lang import to_script

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

# One line is the whole answer: stopping at the newline keeps the model from adding an
# explanation or an answer after the translation (greedy decoding otherwise runs to max_tokens).
TRANSLATE_STOP = ["\n", "<|im_end|>", "<|endoftext|>", "<|im_start|>"]


def translate_messages(question: str) -> list[Any]:
    """The chat for one query translation: system, worked examples, the question."""
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="system", content=TRANSLATE_SYSTEM)]
    for en, zh in TRANSLATE_EXAMPLES:
        messages.append(ChatMessage(role="user", content=en))
        messages.append(ChatMessage(role="assistant", content=zh))
    messages.append(ChatMessage(role="user", content=" ".join(question.split())))
    return messages


def translate_query(question: str, llm: LLM | None, *, max_tokens: int = 48) -> str | None:
    """Simplified-Chinese rendering of an English question (for retrieval), or None.

    One greedy call of at most `max_tokens`, stopped at the first newline. Give it the
    translator context (`rag.llm.build_translator`): on the answering context every
    translation evicted the answer prompt's cached prefix and the next answer re-evaluated it
    (measured in bench/query_translation.py). None when the model fails or does not reply in Chinese.
    """
    if llm is None or not question.strip():
        return None
    try:
        out = llm.chat(translate_messages(question), max_tokens=max_tokens, stop=list(TRANSLATE_STOP),
                       temperature=0.0).message.content or ""
    except Exception:  # translation is an aid to retrieval, never a reason to fail
        return None
    out = out.strip().splitlines()[0].strip().strip("\"'“”「」") if out.strip() else ""
    cjk, latin = script_stats(out)
    if cjk < 2 or cjk < latin:
        return None
    return to_script(out, "zh-Hans")
