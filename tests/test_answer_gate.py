"""The answerability gate (rag/answering/gate.py): question kinds from language facts, the fitted
model file and its reproducibility, decisions on hand-built passages. Fast: no model."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fakes_llm import hit

from rag.answering.gate import FEATURES, MODEL_FILE, AnswerabilityGate, expected_kind, has_kind, load_model

ROOT = Path(__file__).resolve().parent.parent
ROWS = ROOT / "evals" / "gate-rows.json"


@pytest.mark.parametrize(
    "question,kind",
    [
        ("越南的科举于何时废除？", "time"),
        ("When did the Dong Son culture flourish?", "time"),
        ("這座球場可容納多少名觀眾？", "number"),
        ("How many works did he write?", "number"),
        ("How long was the turtle?", "number"),
        ("张镈祖籍哪里？", "place"),
        ("Where were the fossils found?", "place"),
        ("誰是這場戰役的最大贏家？", "person"),
        ("Who starred in the series?", "person"),
        ("这部小说讲述了什么故事？", None),
        ("会议在哪举行？", "place"),
        ("这些项目主要集中在哪五大领域？", None),  # 哪 before a numeral: "which", not "where"
        ("总部设在哪个城市？", "place"),
        # 哪个 + noun is also written 哪一个 / 哪一 + noun, 哪 + noun as 哪一 + noun
        ("自然史博物館位在哪一個國家內?", "place"),
        ("芝台書院的創辦人為哪一個人?", "person"),
        ("歐洲的哪一國希望成為常任理事國？", "place"),
        ("大躍進的弊病從哪時開始逐漸浮現?", "time"),
        # an English "which" + noun with a word between
        ("In which Taiwanese city is the zone?", "place"),
        ("Which European country joined them?", "place"),
        ("Which kind of clothing is it?", None),
    ],
)
def test_expected_kind_from_question_words(question, kind):
    assert expected_kind(question) == kind


@pytest.mark.parametrize("kind, text, answer", [
    ("number", "这家工厂面临三重压力。", "三重"),       # a numeral with a measure word the pattern lacks
    ("number", "该队在联赛中排名第一。", "第一"),           # an ordinal
    ("time", "这座石桥建于明代。", "明代"),           # a dynasty answers "when"
    ("person", "该方案由中国科学院提出。", "中国科学院"),    # an organisation answers "who"
])
def test_the_kind_asked_is_found_where_the_answer_stands(kind, text, answer):
    a = text.index(answer)
    assert has_kind(kind, text, a, a + len(answer), broad=True)
    # and not in the rest of the sentence: the span is the answer's, not a whole-text match
    assert not has_kind(kind, text, 0, a, broad=True)
    # the span picker reads kinds by the patterns and name tags alone (see kind_spans)
    assert not has_kind(kind, text, a, a + len(answer))


def test_model_file_is_fitted_for_these_features():
    model = load_model()
    assert model["features"] == FEATURES
    assert len(model["coef"]) == len(model["mean"]) == len(model["scale"]) == len(FEATURES)
    assert set(model["threshold"]) == {"crosslingual", "same_language"}
    assert all(0.0 < t < 1.0 for t in model["threshold"].values())
    cv = model["cross_validation"]["by_set"]
    assert {"cmrc-train", "crosslingual", "drcd", "seed"} <= set(cv)


def test_a_model_for_other_features_is_refused(tmp_path):
    bad = tmp_path / "gate.json"
    bad.write_text(json.dumps({**load_model(), "features": FEATURES[:-1]}), encoding="utf-8")
    with pytest.raises(RuntimeError, match="fit_gate"):
        load_model(bad)


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_fit_script_reproduces_the_stored_model():
    spec = importlib.util.spec_from_file_location("fit_gate", ROOT / "scripts" / "fit_gate.py")
    fit_gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_gate)
    stored = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    rows = fit_gate.load_rows(ROWS)
    fitted = fit_gate.fit(rows, stored["fit"]["C"], stored["fit"]["max_false_refusals"])
    for key in ("mean", "scale", "coef"):
        assert fitted[key] == pytest.approx(stored[key], abs=1e-3), key
    assert fitted["intercept"] == pytest.approx(stored["intercept"], abs=1e-3)
    for lang, t in stored["threshold"].items():
        assert fitted["threshold"][lang] == pytest.approx(t, abs=1e-3)
    # cross-validated: every set was judged by a model fitted without its corpus
    assert fitted["cross_validation"] == stored["cross_validation"]


def _hit(text, n, dense, kw):
    h = hit(text, n)
    h.dense_score, h.keyword_score = dense, kw
    return h


ANSWER = "深圳体育场位于深圳市福田区，可容纳观众32500人，于1985年落成。"
OTHER_1 = "该乐队于1990年代在日本成立，发行了多张专辑。"
OTHER_2 = "这种植物生长在热带雨林中，叶子呈心形。"


def test_gate_passes_the_answering_passage_and_refuses_unrelated_ones():
    gate = AnswerabilityGate()
    q = "深圳体育场可以容纳多少名观众？"
    sup = gate.check(q, [_hit(ANSWER, 1, 0.88, 12.0), _hit(OTHER_1, 2, 0.78, 0.5), _hit(OTHER_2, 3, 0.77, 0.0)])
    assert sup.answerable and sup.passing[0] == 0 and sup.kind == "number"
    assert sup.scores[0] > sup.scores[1] and sup.scores[0] > sup.scores[2]
    off = gate.check(q, [_hit(OTHER_1, 1, 0.79, 0.5), _hit(OTHER_2, 2, 0.78, 0.0)])
    assert not off.answerable and off.passing == [] and off.reason
    assert not gate.check(q, []).answerable


def test_english_question_is_bridged_before_the_gate_judges():
    gate = AnswerabilityGate()
    q = "How many spectators can Shenzhen Stadium hold?"
    sup = gate.check(q, [_hit(ANSWER, 1, 0.84, 9.0), _hit(OTHER_1, 2, 0.76, 0.0)])
    assert sup.answerable and sup.passing[0] == 0


def _coverage(gate, question, text):
    q = gate.question(question)
    return gate.features(q, [_hit(text, 1, 0.8, 5.0)], 0)


def test_an_english_word_and_its_translations_count_once():
    """Each English content word is one group: its Chinese terms and the word itself.
    Counted again as a group of its own, it could never be covered by Chinese text (nor its
    translations by English text), and every English question covered half its terms."""
    gate = AnswerabilityGate()
    q = "How many spectators can Shenzhen Stadium hold?"
    groups = gate.question(q).groups
    for word in ("spectators", "shenzhen", "stadium"):
        assert sum(word in g for g in groups) == 1, word
        assert any(len(g) > 1 for g in groups if word in g), word  # beside its translations
    assert _coverage(gate, q, ANSWER)["coverage"] >= 0.7
    assert _coverage(gate, q, "Shenzhen Stadium holds 32,500 spectators and opened in 1985.")["coverage"] >= 0.7


def test_a_name_of_several_words_is_held_by_the_share_of_its_words():
    """One word's translation is half of a two-word name, not the whole of it; the Latin
    name itself holds it whole; diacritics are read as the bridge reads them."""
    gate = AnswerabilityGate()
    q = "When did the Group Sounds boom fade?"
    assert _coverage(gate, q, "这个团体在当地很有名。")["name_coverage"] == pytest.approx(0.5)
    assert _coverage(gate, q, "Group Sounds在1960年代后期迅速消失。")["name_coverage"] == 1.0
    assert _coverage(gate, q, "这种植物生长在热带雨林中。")["name_coverage"] == 0.0
    (name,) = gate.question("How many works did Minoru Endō write?").names
    assert name.forms == ("minoru endo",) and len(name.parts) == 2


def _fit_gate_module():
    spec = importlib.util.spec_from_file_location("fit_gate", ROOT / "scripts" / "fit_gate.py")
    fit_gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_gate)
    return fit_gate


def test_cutting_the_answer_leaves_the_sentence_and_other_numbers():
    cut = _fit_gate_module().cut_answer
    # a number is cut where it stands whole, not out of a longer one
    assert cut("于2001年落成，另设2层商铺，共2,000方呎。", ["2"]) == "于2001年落成，另设层商铺，共2,000方呎。"
    # matched in simplified form: a traditional passage loses the same characters
    assert cut("歐德謨認為角是偏差。", ["欧德谟"]) == "認為角是偏差。"
    assert cut("Built in 2001 with two floors and a network", ["two"]) == "Built in 2001 with  floors and a network"


class _FakeEmbedder:
    """Unit vectors: a passage's cosine to any question is its length's share of 100."""

    def embed_queries(self, texts):
        import numpy as np

        return np.array([[1.0, 0.0] for _ in texts])

    def embed_passages(self, texts):
        import numpy as np

        return np.array([[len(t) / 100, (1 - (len(t) / 100) ** 2) ** 0.5] for t in texts])


def test_span_removed_negatives_lose_only_the_fact_asked_for():
    from rag.evaluate import EvalItem

    fit_gate = _fit_gate_module()
    text = "上海科学技术出版社始建于1955年，已出版各类图书11000种，累计印数达5.7亿册。"
    item = EvalItem("q", "上海科学技术出版社已出版图书多少种？", "zh-Hans", ["各类图书11000种"], [["11000种"]])
    hits = [hit(text, 1), hit("另一段无关的文字。", 2)]
    out = fit_gate.span_removed(item, hits, _FakeEmbedder())
    assert out is not None and out[0].chunk.text == text.replace("11000种", "")
    # the cut passage's similarity is recomputed, an untouched one keeps its own
    assert out[0].dense_score == pytest.approx(len(out[0].chunk.text) / 100)
    assert out[1] is not hits[1] and out[1].dense_score == hits[1].dense_score
    # nothing to cut when the question asks for no number, date, person or place
    assert fit_gate.span_removed(EvalItem("q", "这家出版社出版了什么？", "zh-Hans", item.evidence, item.answer_must),
                                 hits, _FakeEmbedder()) is None
    # nor when the answer stays in another spelling (Chinese numerals count as the number)
    twice = text.replace("。", "，即一万一千种。")
    item2 = EvalItem("q", item.question, "zh-Hans", item.evidence, [["11000"]])
    assert fit_gate.span_removed(item2, [hit(twice, 1)], _FakeEmbedder()) is None
    # nor when the evidence is not among the top passages
    assert fit_gate.span_removed(item, [hit("另一段无关的文字。", 1)], _FakeEmbedder()) is None


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_span_removed_rows_are_judged_not_fitted():
    """The span-removed variant measures the gate on on-topic unanswerable questions; the
    model and thresholds are the same with or without those rows."""
    fit_gate = _fit_gate_module()
    rows = fit_gate.load_rows(ROWS)
    assert any(r["variant"] == "span-removed" for r in rows)
    with_cut = fit_gate.fit(rows, 1.0, 0.02)
    without = fit_gate.fit([r for r in rows if r["variant"] != "span-removed"], 1.0, 0.02)
    assert with_cut["coef"] == without["coef"] and with_cut["threshold"] == without["threshold"]
    pooled = with_cut["cross_validation"]["pooled_out_of_fold"]
    assert pooled["n_span_removed"] > 0 and 0.0 <= pooled["refusal_accuracy_span_removed"] <= 1.0
    assert without["cross_validation"]["pooled_out_of_fold"]["refusal_accuracy_span_removed"] is None


class _EnglishCorpus:
    """The gate's view of an index of English documents: their vocabulary and statistics."""

    def __init__(self, texts):
        from rag.crossling import CorpusVocab

        self.vocab = CorpusVocab.from_texts(texts)

    def idf(self, term):
        return 2.0

    def doc_freq(self, term):
        return int(term in self.vocab)


EN_ANSWER = "Halvorsen Marine Group reported revenue of 14.6 billion kroner for 2024, an increase of 9 percent."
EN_OTHER = "The emperor penguin breeds in the Antarctic winter and the male keeps the egg on his feet."


def test_a_chinese_question_over_english_passages_is_read_through_the_bridge():
    """The question's terms are covered by their English words in the documents, and an
    English passage is judged as the other language's (the crosslingual feature and
    threshold); over Chinese-only text nothing of this changes."""
    gate = AnswerabilityGate(corpus=_EnglishCorpus([EN_ANSWER, EN_OTHER]))
    q = gate.question("哈尔沃森海事集团2024年的收入是多少？")
    answer = gate.features(q, [_hit(EN_ANSWER, 1, 0.82, 3.0)], 0)
    other = gate.features(q, [_hit(EN_OTHER, 1, 0.82, 3.0)], 0)
    assert answer["crosslingual"] == other["crosslingual"] == 1.0
    assert answer["coverage"] >= 0.7 and answer["name_coverage"] == 1.0
    assert other["coverage"] == 0.0 and other["name_coverage"] == 0.0
    sup = gate.check(q.text, [_hit(EN_ANSWER, 1, 0.82, 3.0), _hit(EN_OTHER, 2, 0.80, 0.0)])
    assert sup.answerable and sup.passing == [0]
    assert not gate.check("台北101大楼有多高？", [_hit(EN_OTHER, 1, 0.80, 0.0)]).answerable
    # a Chinese passage for a Chinese question is the same language, as before
    assert gate.features(gate.question("深圳体育场可容纳多少观众？"), [_hit(ANSWER, 1, 0.84, 9.0)], 0)["crosslingual"] == 0.0
