"""The extractive answer's sentence picker (rag/answering/extractive.py): the question readings
it uses, the fitted model file and its reproducibility, and picks on hand-built passages. Fast: no model."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from fakes_llm import hit

from rag.answering.extractive import (
    PICKER_FILE,
    SENTENCE_FEATURES,
    ExtractiveAnswerer,
    answer_probabilities,
    focus_chars,
    load_picker,
    question_bigrams,
)
from rag.answering.gate import AnswerabilityGate

ROOT = Path(__file__).resolve().parent.parent
ROWS = ROOT / "evals" / "picker-rows.json"

FROG = ("灰斑蛙又称石蛙，为蛙科的其中一个种。"
        "本种分布在东南亚，包括泰国、越南、老挝等地的山溪。"
        "其体长可达8公分，背部有灰色斑点。"
        "本种于1998年在老挝首次被发现。")


def test_focus_chars_are_those_of_the_clause_that_asks():
    q = AnswerabilityGate().question("这座城市曾模仿北方建立书院制度，但城里的书院于何时关闭？")
    chars = focus_chars(q)
    assert {"书", "院", "关", "闭", "城"} <= chars
    assert not chars & {"模", "仿", "建", "立", "北"}  # the scene-setting clause
    assert not chars & {"何", "的", "于"}  # the question word and function words


def test_question_bigrams_cross_jiebas_word_boundaries():
    q = AnswerabilityGate().question("王小明封平原侯是哪一年？")
    grams = question_bigrams(q)
    assert {"小明", "明封", "封平", "平原", "原侯"} <= grams
    assert not any("哪" in g or "年" in g for g in grams)  # the question words are blanked


def test_english_questions_read_their_bridged_chinese_terms():
    q = AnswerabilityGate().question("Where is the stadium?")
    assert all("\u4e00" <= c <= "\u9fff" for c in focus_chars(q))


def test_model_file_is_fitted_for_these_features():
    model = load_picker()
    assert model["features"] == SENTENCE_FEATURES
    assert len(model["coef"]) == len(model["scale"]) == len(SENTENCE_FEATURES)
    assert model["temperature"] > 0 and 0 < model["coverage"] < 1 and model["max_sentences"] >= 1
    cv = model["cross_validation"]["by_set"]
    assert {"cmrc-train", "crosslingual", "drcd", "seed"} <= set(cv)


def test_a_model_for_other_features_is_refused(tmp_path):
    bad = tmp_path / "picker.json"
    bad.write_text(json.dumps({**load_picker(), "features": SENTENCE_FEATURES[:-1]}), encoding="utf-8")
    with pytest.raises(RuntimeError, match="fit_picker"):
        load_picker.__wrapped__(bad)


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_fit_script_reproduces_the_stored_model():
    spec = importlib.util.spec_from_file_location("fit_picker", ROOT / "scripts" / "fit_picker.py")
    fit_picker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_picker)
    import fit_gate  # on sys.path once fit_picker is loaded: the fit scripts share its row loading

    stored = json.loads(PICKER_FILE.read_text(encoding="utf-8"))
    fitted = fit_picker.fit(fit_gate.load_rows(ROWS), stored["fit"]["C"])
    for key in ("scale", "coef"):
        assert fitted[key] == pytest.approx(stored[key], abs=1e-3), key
    for key in ("temperature", "coverage", "max_sentences"):
        assert fitted[key] == stored[key], key
    # cross-validated: every set judged by a model fitted without its corpus
    assert fitted["cross_validation"] == stored["cross_validation"]


def _pick(answerer, question, hits):
    sup = answerer.gate.check(question, hits)
    return answerer.pick_spans(question, hits, list(range(len(hits))), sup.question, sup.scores)


def test_fitted_picker_leads_with_the_sentence_holding_what_is_asked():
    # the name asked about is only in the first sentence; the answers are in later ones
    ans = ExtractiveAnswerer()
    hits = [hit(FROG, 1)]
    (hi, a, b), *_ = _pick(ans, "灰斑蛙的体长可达多少？", hits)
    assert "8公分" in FROG[a:b]
    (hi, a, b), *_ = _pick(ans, "灰斑蛙是哪一年首次被发现的？", hits)
    assert "1998年" in FROG[a:b]


def _picker(coef: dict[str, float], coverage: float, temperature: float = 1.0, max_sentences: int = 3) -> dict:
    return {"features": SENTENCE_FEATURES, "scale": [1.0] * len(SENTENCE_FEATURES),
            "coef": [coef.get(f, 0.0) for f in SENTENCE_FEATURES], "temperature": temperature,
            "coverage": coverage, "max_sentences": max_sentences}


def test_answer_probabilities_are_a_softmax_of_the_scores():
    probs = answer_probabilities([3.0, 1.0, 0.0], 1.0)
    assert sum(probs) == pytest.approx(1.0)
    assert probs[0] == pytest.approx(math.exp(3) / (math.exp(3) + math.exp(1) + 1))
    flat = answer_probabilities([3.0, 1.0, 0.0], 3.0)
    assert flat[0] < probs[0] and flat[2] > probs[2]  # a higher temperature is less sure
    assert answer_probabilities([], 1.0) == []


def test_the_model_decides_the_order_and_quotes_runners_up_only_until_sure():
    text = FROG[:FROG.index("本种于")]  # one sentence names a place
    hits = [hit(text, 1)]
    q = "灰斑蛙分布在哪里？"
    # a model that only likes first sentences leads with the first one
    first_only = ExtractiveAnswerer(picker=_picker({"first": 3.0}, 0.8))
    spans = _pick(first_only, q, hits)
    assert len(spans) == 1 and spans[0][1] == 0
    # a model that weighs the kind of thing asked leads with the place (scores 3, 1, 0: the
    # place sentence alone has chance 0.84 of answering); asked to be surer, or less sure of
    # its scores (a higher temperature), it adds the runner-up, in document order after the lead
    kind = {"kind": 3.0, "first": 1.0}
    spans = _pick(ExtractiveAnswerer(picker=_picker(kind, 0.8)), q, hits)
    assert len(spans) == 1 and "东南亚" in text[spans[0][1]:spans[0][2]]
    for picker in (_picker(kind, 0.9), _picker(kind, 0.8, temperature=3.0)):
        spans = _pick(ExtractiveAnswerer(picker=picker), q, hits)
        assert "东南亚" in text[spans[0][1]:spans[0][2]]
        assert len(spans) == 2 and text[spans[1][1]:spans[1][2]].startswith("灰斑蛙")
    # never more than max_sentences, however unsure
    assert len(_pick(ExtractiveAnswerer(picker=_picker({}, 0.99, max_sentences=2)), q, hits)) == 2
    assert len(_pick(ExtractiveAnswerer(picker=_picker({}, 0.99), max_sentences=1), q, hits)) == 1


def test_a_second_sentence_from_another_passage_must_name_what_the_question_names():
    # a model so unsure that it would quote every sentence: only the names rule decides
    wide = ExtractiveAnswerer(picker=_picker({"first": 1.0}, 0.999))
    q = "上海8月推出了什么？"
    other_city = [hit("今年8月，上海推出人工智能制造实施方案。", 1), hit("今年5月，浙江印发人工智能若干措施。", 2)]
    spans = _pick(wide, q, other_city)
    assert [s[0] for s in spans] == [0]
    same_city = [hit("今年8月，上海推出人工智能制造实施方案。", 1), hit("8月底，上海还推出了算力券。", 2)]
    spans = _pick(wide, q, same_city)
    assert sorted(s[0] for s in spans) == [0, 1]
