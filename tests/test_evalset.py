"""Validate the eval sets: the seed sets against the seed article, the public sets against their corpora.

Fast, no models: only JSON parsing, a pinyin regex and OpenCC t2s.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVALSET = ROOT / "evals" / "questions.jsonl"
ARTICLE = ROOT / "seeds" / "000_e271bcc5b97e4740.txt"

LANGS = {"zh-Hans", "zh-Hant", "en"}
REQUIRED = {
    "id": str,
    "question": str,
    "lang": str,
    "evidence": list,
    "answer_must": list,
    "answerable": bool,
}
PINYIN_RE = re.compile(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùüǘǚǜ]+\)")
CJK_RE = re.compile(r"[\u3400-\u9fff]")
# Evidence must be a plain substring: Chinese characters, digits, Latin letters.
EVIDENCE_RE = re.compile(r"^[\u3400-\u9fffA-Za-z0-9]{4,15}$")


@lru_cache(maxsize=1)
def _converter():
    opencc = pytest.importorskip("opencc")
    last_err: Exception | None = None
    for config in ("t2s", "t2s.json"):
        try:
            return opencc.OpenCC(config)
        except Exception as err:  # pragma: no cover - depends on opencc build
            last_err = err
    raise RuntimeError(f"cannot build an OpenCC t2s converter: {last_err}")


def to_simplified(text: str) -> str:
    return _converter().convert(text)


def drop_punct(text: str) -> str:
    """Remove whitespace and punctuation/symbols (both ASCII and full-width)."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        ch for ch in text if not (ch.isspace() or unicodedata.category(ch)[0] in "PSZ")
    )


@lru_cache(maxsize=1)
def article_simplified() -> str:
    """Article with pinyin stripped and converted to simplified (punctuation kept)."""
    raw = ARTICLE.read_text(encoding="utf-8")
    return to_simplified(PINYIN_RE.sub("", raw))


@lru_cache(maxsize=1)
def article_clean() -> str:
    return drop_punct(article_simplified()).lower()


@lru_cache(maxsize=1)
def records() -> list[dict]:
    assert EVALSET.exists(), f"missing {EVALSET}"
    out = []
    for n, line in enumerate(EVALSET.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"blank line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            pytest.fail(f"line {n} is not valid JSON: {err}")
        assert isinstance(obj, dict), f"line {n} is not a JSON object"
        out.append(obj)
    return out


def answerable() -> list[dict]:
    return [r for r in records() if r["answerable"]]


def test_fields_and_types():
    for r in records():
        for key, typ in REQUIRED.items():
            assert key in r, f"{r.get('id')}: missing {key}"
            assert isinstance(r[key], typ), f"{r['id']}: {key} should be {typ.__name__}"
        assert r["id"].strip() and r["question"].strip(), r
        assert r["lang"] in LANGS, f"{r['id']}: bad lang {r['lang']!r}"
        assert all(isinstance(e, str) and e for e in r["evidence"]), r["id"]
        for group in r["answer_must"]:
            assert isinstance(group, list) and group, f"{r['id']}: empty/non-list group"
            assert all(isinstance(a, str) and a for a in group), r["id"]


def test_unique_ids():
    dupes = [i for i, c in Counter(r["id"] for r in records()).items() if c > 1]
    assert not dupes, f"duplicate ids: {dupes}"


def test_unique_questions():
    dupes = [q for q, c in Counter(r["question"] for r in records()).items() if c > 1]
    assert not dupes, f"duplicate questions: {dupes}"


def test_counts():
    recs = records()
    assert len(recs) >= 40
    assert sum(not r["answerable"] for r in recs) >= 5
    by_lang = Counter(r["lang"] for r in recs)
    for lang in LANGS:
        assert by_lang[lang] >= 10, f"only {by_lang[lang]} questions in {lang}"
    unans_langs = {r["lang"] for r in recs if not r["answerable"]}
    assert unans_langs == LANGS, f"unanswerable questions only in {unans_langs}"


def test_required_questions_present():
    questions = {r["question"] for r in records()}
    for q in (
        "What did Shanghai announce in August?",
        "上海8月发布了什么？",
        "上海8月發佈了什麼？",
        "全國首個市級人工智能管理機構在哪裡？",
        "How large was the global industrial AI market in 2024?",
    ):
        assert q in questions, f"missing required question {q!r}"


def test_unanswerable_have_no_evidence_or_answer():
    for r in records():
        if not r["answerable"]:
            assert r["evidence"] == [], r["id"]
            assert r["answer_must"] == [], r["id"]


def test_answerable_have_evidence_and_answer():
    for r in answerable():
        assert 1 <= len(r["evidence"]) <= 3, f"{r['id']}: want 1-3 evidence strings"
        assert 1 <= len(r["answer_must"]) <= 3, f"{r['id']}: want 1-3 answer groups"


def test_evidence_shape_and_simplified():
    for r in answerable():
        for ev in r["evidence"]:
            assert EVIDENCE_RE.match(ev), f"{r['id']}: evidence {ev!r} not 4-15 plain chars"
            assert to_simplified(ev) == ev, f"{r['id']}: evidence {ev!r} not simplified"


def test_evidence_occurs_in_article():
    text = article_clean()
    for r in answerable():
        for ev in r["evidence"]:
            assert drop_punct(ev).lower() in text, f"{r['id']}: evidence {ev!r} not in article"


def test_evidence_is_contiguous_in_article():
    """Stricter: no punctuation was skipped over, so a chunk whose punctuation is only
    folded (not removed) still contains the evidence string verbatim."""
    text = unicodedata.normalize("NFKC", article_simplified())
    for r in answerable():
        for ev in r["evidence"]:
            assert ev in text, f"{r['id']}: evidence {ev!r} spans punctuation or is absent"


def test_answer_alternatives_normalised():
    for r in answerable():
        for group in r["answer_must"]:
            for alt in group:
                assert alt == alt.lower(), f"{r['id']}: {alt!r} not lowercase"
                assert to_simplified(alt) == alt, f"{r['id']}: {alt!r} not simplified"
                assert alt == alt.strip(), f"{r['id']}: {alt!r} has outer whitespace"


def _alt_in_article(alt: str) -> bool:
    """An alternative with punctuation (e.g. "1/5", "40.5万亿") is matched against the
    punctuated text, so that "1/5" cannot match "15"; others against the cleaned text."""
    norm = unicodedata.normalize("NFKC", alt).lower()
    if drop_punct(norm) != norm:
        return norm in unicodedata.normalize("NFKC", article_simplified()).lower()
    return norm in article_clean()


def test_answer_grounded_in_article():
    for r in answerable():
        chinese = [
            [a for a in group if CJK_RE.search(a) or re.search(r"\d", a)]
            for group in r["answer_must"]
        ]
        assert any(any(_alt_in_article(a) for a in g) for g in chinese), (
            f"{r['id']}: no Chinese answer alternative found in the article"
        )
        # Stricter than the contract: every group must be satisfiable by an
        # extractive (copied-from-the-article) answer.
        for group, g in zip(r["answer_must"], chinese):
            assert any(_alt_in_article(a) for a in g), (
                f"{r['id']}: group {group} has no alternative present in the article"
            )


def test_english_groups_have_english_form():
    for r in answerable():
        if r["lang"] != "en":
            continue
        for group in r["answer_must"]:
            assert any(not CJK_RE.search(a) for a in group), (
                f"{r['id']}: group {group} lacks a non-Chinese alternative"
            )


def test_chinese_groups_have_chinese_or_number_form():
    """Extractive answers are Chinese sentences: every group must be satisfiable by them."""
    for r in answerable():
        for group in r["answer_must"]:
            assert any(CJK_RE.search(a) or re.search(r"\d", a) for a in group), (
                f"{r['id']}: group {group} has no Chinese/number alternative"
            )


@pytest.mark.parametrize("name", ["heldout.jsonl", "unseen.jsonl"])
def test_other_eval_sets_are_well_formed_and_grounded(name):
    """The held-out and unseen sets: same schema, unique ids, evidence found in the article,
    unanswerable questions carry no evidence or facts."""
    lines = (ROOT / "evals" / name).read_text(encoding="utf-8").splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    assert len(recs) >= 30
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert set(REQUIRED) <= set(r) and r["lang"] in LANGS, r
        if r["answerable"]:
            assert r["evidence"] and r["answer_must"], r["id"]
            for e in r["evidence"]:
                assert drop_punct(to_simplified(e)).lower() in article_clean(), (r["id"], e)
        else:
            assert not r["evidence"] and not r["answer_must"], r["id"]


# ---------------------------------------------------------------- public development sets
# evals/{cmrc-train,drcd,crosslingual}: public Chinese Wikipedia reading-comprehension data
# (see evals/README-public-sets.md), each over the corpus folder evals/sets.toml names.

PUBLIC_SETS = ["cmrc-train", "drcd", "crosslingual"]


@lru_cache(maxsize=None)
def _manifest() -> dict:
    import tomllib

    data = tomllib.loads((ROOT / "evals" / "sets.toml").read_text(encoding="utf-8"))
    return {s["name"]: s for s in data["set"]}


@lru_cache(maxsize=None)
def _corpus_norm(corpus: str) -> str:
    """All corpus files, normalised as the set README says evidence is: t2s, lower-case,
    pinyin glosses removed; files joined by a separator no evidence can span."""
    folder = ROOT / "evals" / corpus
    texts = [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))]
    return "\x00".join(to_simplified(PINYIN_RE.sub("", t)).lower() for t in texts)


def _public_records(name: str) -> list[dict]:
    path = ROOT / "evals" / _manifest()[name]["questions"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_seed_sets_are_in_the_manifest():
    m = _manifest()
    for name, file in (("seed", "questions.jsonl"), ("seed-heldout", "heldout.jsonl"), ("seed-unseen", "unseen.jsonl")):
        assert m[name]["questions"] == file and m[name]["corpus"] == "../seeds", m[name]


@pytest.mark.parametrize("name", PUBLIC_SETS)
def test_public_set_is_well_formed_and_grounded(name):
    spec = _manifest()[name]
    recs = _public_records(name)
    stats = json.loads((ROOT / "evals" / name / "stats.json").read_text(encoding="utf-8"))
    assert len(recs) == stats["questions"]
    assert sum(r["answerable"] for r in recs) == stats["answerable"]
    assert sum(not r["answerable"] for r in recs) == stats["unanswerable"] >= 5
    assert dict(Counter(r["lang"] for r in recs)) == stats["by_lang"]
    assert len({r["id"] for r in recs}) == len(recs)
    assert len({r["question"] for r in recs}) == len(recs)
    corpus = _corpus_norm(spec["corpus"])
    for r in recs:
        for key, typ in REQUIRED.items():
            assert isinstance(r.get(key), typ), (r.get("id"), key)
        assert r["lang"] in LANGS and r["question"].strip(), r["id"]
        if not r["answerable"]:
            assert r["evidence"] == [] and r["answer_must"] == [], r["id"]
            continue
        assert r["evidence"] and r["answer_must"], r["id"]
        assert all(isinstance(g, list) and g and all(isinstance(a, str) and a for a in g) for g in r["answer_must"])
        for ev in r["evidence"]:
            # the README's promise: the normalised evidence occurs exactly once in the corpus
            assert corpus.count(to_simplified(ev).lower()) == 1, (r["id"], ev)


def test_crosslingual_mirrors_cmrc_train():
    zh, en = _public_records("cmrc-train"), _public_records("crosslingual")
    assert len(zh) == len(en)
    for a, b in zip(zh, en):
        assert b["lang"] == "en" and a["lang"] == "zh-Hans"
        assert (a["evidence"], a["answerable"], a["source_id"]) == (b["evidence"], b["answerable"], b["source_id"])
        assert b["id"] == a["id"].replace("cmrc-tr-", "xl-")
