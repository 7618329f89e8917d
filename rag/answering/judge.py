"""The model's reading of whether the evidence answers the question (LLM mode only).

The gate (gate.py) passes a question when a passage is on its topic and holds its terms
and the kind of answer it asks for. It cannot tell "the passage gives Wenzhou's new bureau"
from "the passage gives who heads it": the words overlap either way. After the gate
passes and the span picker has chosen the evidence sentences, the local model reads those
sentences and the question once (`JUDGE_SYSTEM`/`JUDGE_USER` in prompts.py) and the first
token of its reply is scored: the logit of Yes minus that of No. Below the threshold
for the question's language the reply is the refusal.

The thresholds are fitted (`scripts/fit_judge.py` -> rag/data/judge.json) on the development
sets' answerable questions only: the score below which at most `max_false_refusals` of the
answers whose evidence holds the expected facts fall, so a threshold never comes from the
unanswerable questions it is measured on. The file also records a hash of the prompt and
the model it was fitted with: with another wording or another model the thresholds mean
nothing, and the judge is off (`AnswerJudge.load` says why).

The judge runs on its own llama.cpp context (`rag.llm.build_judge`): on the answering
context its prompt would evict the answer prompt's cached prefix. One call is one prompt
evaluation (~130 tokens, about 1 s on 2 cores) and one token.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rag.answering.prompts import JUDGE_NO, JUDGE_SYSTEM, JUDGE_USER, JUDGE_YES

JUDGE_FILE = Path(__file__).resolve().parent.parent / "data" / "judge.json"
# the evidence the model reads, at most (the picker's sentences; longer is one passage pasted whole)
EVIDENCE_CHARS = 600


def prompt_hash() -> str:
    """What the fitted thresholds were fitted for: the judge's whole wording."""
    text = json.dumps([JUDGE_SYSTEM, JUDGE_USER, JUDGE_YES, JUDGE_NO], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def judge_prompt(question: str, evidence: Sequence[str]) -> str:
    """The ChatML prompt of one judgement, ending where the model's first token goes."""
    text = " ".join(" ".join(s.split()) for s in evidence if s.strip())[:EVIDENCE_CHARS]
    user = JUDGE_USER.format(text=text, question=" ".join(question.split()))
    return (f"<|im_start|>system\n{JUDGE_SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


@dataclass
class Judgement:
    score: float      # logit(Yes) - logit(No) of the first token
    threshold: float
    answers: bool     # score >= threshold


class AnswerJudge:
    """`judge(question, evidence, english) -> Judgement` with a llama.cpp LLM (the
    LockedLlamaCPP of rag.llm) and the thresholds of rag/data/judge.json."""

    def __init__(self, llm: Any, thresholds: dict[str, float]):
        self.llm = llm
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self._ids: tuple[list[int], list[int]] | None = None

    @classmethod
    def load(cls, llm: Any, path: Path = JUDGE_FILE, model_label: str | None = None) -> "AnswerJudge":
        """The judge with its fitted thresholds; RuntimeError when the file was fitted for
        another prompt or model (refit with scripts/fit_judge.py)."""
        fitted = json.loads(Path(path).read_text(encoding="utf-8"))
        if fitted.get("prompt") != prompt_hash():
            raise RuntimeError(f"{path} was fitted for another judge prompt: rerun scripts/fit_judge.py")
        if model_label is not None and fitted.get("model") != model_label:
            raise RuntimeError(f"{path} was fitted for {fitted.get('model')}, not {model_label}")
        return cls(llm, fitted["threshold"])

    def _token_ids(self) -> tuple[list[int], list[int]]:
        if self._ids is None:
            tok = self.llm._model.tokenize  # llama_cpp.Llama under the LlamaIndex wrapper

            def first(words):
                return sorted({tok(w.encode("utf-8"), add_bos=False, special=False)[0] for w in words})

            self._ids = (first(JUDGE_YES), first(JUDGE_NO))
        return self._ids

    def score(self, question: str, evidence: Sequence[str]) -> float:
        """logit(Yes) - logit(No) for the model's first token (both spellings pooled)."""
        from llama_cpp import LogitsProcessorList

        yes, no = self._token_ids()
        seen: list[tuple[float, float]] = []

        # llama-cpp-python hands a logits processor the next token's logits; with
        # max_tokens=1 it runs once, on the prompt's last position. Reading them there
        # keeps llama.cpp's prefix cache (the system prompt is evaluated once per context)
        # and needs no logits_all buffer.
        def capture(_input_ids, logits):
            seen.append((_logsumexp(logits[i] for i in yes), _logsumexp(logits[i] for i in no)))
            return logits

        self.llm.complete(judge_prompt(question, evidence), formatted=True, max_tokens=1,
                          logits_processor=LogitsProcessorList([capture]))
        if not seen:
            raise RuntimeError("the judge's model returned no logits")
        y, n = seen[0]
        return y - n

    def judge(self, question: str, evidence: Sequence[str], english: bool) -> Judgement:
        s = self.score(question, evidence)
        t = self.thresholds["en" if english else "zh"]
        return Judgement(s, t, s >= t)


def _logsumexp(values) -> float:
    vs = [float(v) for v in values]
    m = max(vs)
    return m + math.log(sum(math.exp(v - m) for v in vs))
