"""The answerability judge (rag/answering/judge.py): its score from the first token's
logits, its place in the LLM flow (a low score refuses before the model answers), and
its fitted file (the thresholds reproduce from the stored rows, for this prompt)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from fakes_llm import SHANGHAI, FakeExtractive, ScriptedLLM, article_hits

from rag.answering.flow import LLMAnswerer
from rag.answering.judge import JUDGE_FILE, AnswerJudge, Judgement, judge_prompt, prompt_hash
from rag.answering.prompts import JUDGE_SYSTEM, REFUSAL

ROOT = Path(__file__).resolve().parent.parent
VOCAB = {"Yes": 1, "yes": 2, "No": 3, "no": 4}


class LogitsLLM:
    """Stands in for the llama.cpp wrapper: a tokenizer, and a `complete` that hands the
    logits processor a vector with the given logits for Yes/yes/No/no."""

    def __init__(self, logits: dict[str, float]):
        self.logits = logits
        self.calls: list[tuple[str, dict]] = []
        outer = self

        class Model:
            @staticmethod
            def tokenize(text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
                return [VOCAB[text.decode()], 99]

        self._model = Model()

    def complete(self, prompt: str, formatted: bool = False, **kwargs):
        self.calls.append((prompt, kwargs))
        vec = np.full(100, -20.0, dtype=np.float32)
        for word, v in self.logits.items():
            vec[VOCAB[word]] = v
        for proc in kwargs["logits_processor"]:
            vec = proc(np.array([0]), vec)


class Picking(FakeExtractive):
    """Picks the first passage's whole text as the evidence sentence."""

    def pick_spans(self, question, hits, allowed, q=None, scores=None):
        return [(0, 0, len(hits[0].chunk.text))]


class FixedJudge:
    def __init__(self, score: float, threshold: float = 0.0):
        self.score, self.threshold, self.seen = score, threshold, []

    def judge(self, question, evidence, english):
        self.seen.append((question, list(evidence), english))
        return Judgement(self.score, self.threshold, self.score >= self.threshold)


def test_score_is_the_yes_minus_no_logit_of_the_first_token():
    llm = LogitsLLM({"Yes": 2.0, "yes": 2.0, "No": 0.5, "no": -30.0})
    judge = AnswerJudge(llm, {"en": 0.0, "zh": 3.0})
    s = judge.score("上海8月发布了什么？", [SHANGHAI])
    # Yes and yes pooled: log(e^2 + e^2) - log(e^0.5 + e^-30)
    assert abs(s - (np.log(2 * np.exp(2.0)) - np.log(np.exp(0.5) + np.exp(-30.0)))) < 1e-4
    prompt, kwargs = llm.calls[0]
    assert kwargs["max_tokens"] == 1 and JUDGE_SYSTEM in prompt and SHANGHAI in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # one threshold per question language
    assert judge.judge("q", [SHANGHAI], english=True).answers
    assert not judge.judge("q", [SHANGHAI], english=False).answers


def test_prompt_caps_the_evidence_and_folds_whitespace():
    p = judge_prompt("What  did\nShanghai announce?", ["甲" * 900, "乙"])
    assert "甲" * 600 in p and "甲" * 601 not in p and "乙" not in p
    assert "What did Shanghai announce?" in p


def test_a_low_judgement_refuses_before_the_model_answers():
    llm = ScriptedLLM([])  # any answering call would fail: none is scripted
    judge = FixedJudge(-1.5, threshold=-0.3)
    ans = LLMAnswerer(llm, Picking(), judge=judge).answer("上海的实施方案由谁签发？", article_hits(), "zh-Hans")
    assert ans.refused and ans.text == REFUSAL["zh-Hans"] and llm.calls == 0
    assert "-1.50" in ans.notice and ans.citations == []
    assert judge.seen == [("上海的实施方案由谁签发？", [SHANGHAI], False)]


def test_a_high_judgement_lets_the_model_answer():
    reply = "上海推出了《上海市加快推动“AI+制造”发展的实施方案》[1]。"
    llm = ScriptedLLM([reply])
    judge = FixedJudge(2.0, threshold=-0.3)
    answerer = LLMAnswerer(llm, Picking(), judge=judge)
    ans = answerer.answer("上海8月发布了什么？", article_hits(), "zh-Hans")
    assert not ans.refused and "实施方案" in ans.text and llm.calls == 1
    assert answerer.last_timing.judge == 2.0


def test_no_evidence_no_judgement():
    judge = FixedJudge(-5.0)
    reply = "上海推出了《上海市加快推动“AI+制造”发展的实施方案》[1]。"
    ans = LLMAnswerer(ScriptedLLM([reply]), FakeExtractive(), judge=judge).answer(
        "上海8月发布了什么？", article_hits(), "zh-Hans")
    assert not ans.refused and judge.seen == []


def test_a_judge_that_cannot_load_leaves_the_gate_to_decide():
    def broken():
        raise RuntimeError("fitted for another judge prompt")

    reply = "上海推出了《上海市加快推动“AI+制造”发展的实施方案》[1]。"
    answerer = LLMAnswerer(ScriptedLLM([reply]), Picking(), judge_factory=broken)
    ans = answerer.answer("上海8月发布了什么？", article_hits(), "zh-Hans")
    assert not ans.refused and "another judge prompt" in answerer.judge_notice


def test_fitted_file_is_for_this_prompt_and_reproduces_from_its_rows():
    fitted = json.loads(JUDGE_FILE.read_text(encoding="utf-8"))
    assert fitted["prompt"] == prompt_hash()
    assert set(fitted["threshold"]) == {"en", "zh"}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_judge.py"), "--reuse", "--check"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_loading_refuses_a_file_fitted_for_another_prompt(tmp_path):
    f = tmp_path / "judge.json"
    f.write_text(json.dumps({"prompt": "0" * 16, "model": "m", "threshold": {"en": 0, "zh": 0}}))
    try:
        AnswerJudge.load(object(), f)
    except RuntimeError as exc:
        assert "fit_judge.py" in str(exc)
    else:
        raise AssertionError("a file fitted for another prompt was loaded")


def test_thresholds_keep_the_drift_between_builds_under_the_positives():
    sys.path.insert(0, str(ROOT / "scripts"))
    import fit_judge

    def row(i, score):
        return {"set": "s", "group": "g", "id": f"q{i}", "variant": "asked", "lang": "zh-Hans",
                "answerable": True, "gate_passed": True, "holds": True, "score": score}

    rows = [row(i, 1.0 + i) for i in range(201)] + [dict(row("e", 1.0), lang="en")]
    # the same rows on another build: most 0.05 higher, the lowest positive 0.03 lower, one
    # 0.4 off, one not scored there
    other = [row(i, 1.0 + i + {0: -0.03, 7: 0.4}.get(i, 0.05)) for i in range(200)] + [rows[-1]]
    spread = fit_judge.drift(rows, other)
    assert spread["pairs"] == 201 and spread["median"] == 0.05 and spread["max"] == 0.4
    assert spread["p99"] == 0.05  # 200 of 201 pairs within it
    # the least margin with which a fit on either build refuses no positive of the other
    m = fit_judge.margin_for([rows, other], 0.0)
    assert m["margin"] == 0.03 and m["pairs"]["0-1"] == spread
    assert fit_judge.transfer_false_refusals(rows, other, 0.0, 0.02) > 0
    assert fit_judge.transfer_false_refusals(rows, other, 0.0, 0.03) == 0
    # the thresholds hold on the lowest score a row got on any build, less the margin
    low = fit_judge.lowest([rows, other])
    assert [r["score"] for r in low[:2]] == [0.97, 2.0] and low[-1]["lang"] == "en"
    thr = fit_judge.thresholds(low, 0.0, m["margin"])
    assert abs(thr["zh"] - (0.97 - 0.03)) < 1e-9
    # a third build, scoring most rows 0.1 higher and the lowest positive 0.075 under the
    # first: a fit on any one build keeps every other build's positives
    third = [row(i, 1.0 + i + (-0.075 if i == 0 else 0.1)) for i in range(200)] + [rows[-1]]
    m3 = fit_judge.margin_for([rows, other, third], 0.0)
    assert set(m3["pairs"]) == {"0-1", "0-2", "1-2"} and m3["builds"] == 3
    assert m3["margin"] == 0.08  # a fit on the first: 1.0 - margin must not exceed 0.925
    thr3 = fit_judge.thresholds(fit_judge.lowest([rows, other, third]), 0.0, m3["margin"])
    assert abs(thr3["zh"] - (0.925 - 0.08)) < 1e-9
    # a twin of the first build (same CPU kind, same scores) asks no smaller margin of the others
    assert fit_judge.margin_for([rows, other, third, [dict(r) for r in rows]], 0.0)["margin"] == 0.08
    # never beyond the p99 of the drift, and the least margin with no other build to compare
    far = [row(i, 1.0 + i + (-1.0 if i == 0 else 0.05)) for i in range(200)] + [rows[-1]]
    assert fit_judge.margin_for([rows, far], 0.0)["margin"] == 0.05
    assert fit_judge.margin_for([rows], 0.0)["margin"] == fit_judge.MIN_MARGIN
