"""Eval-set manifest and multi-set runs: parsing, clear errors, per-set and
combined tables, one index per corpus folder (fake embedder, no models)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from rag.evaluate import EvalSet, fit_sets, load_manifest, open_set_assistant, run_sets, select_sets
from rag.settings import Settings
from rag.types import UserError
from tests.conftest import ROOT, SEED
from tests.test_cli import assert_clean_error, run_cli


def test_repo_manifest_lists_every_set():
    sets = {s.name: s for s in load_manifest(ROOT / "evals" / "sets.toml")}
    assert set(sets) == {"seed", "seed-heldout", "seed-unseen", "cmrc-train", "crosslingual", "drcd", "english",
                         "crosslingual-drcd"}
    assert sets["seed"].corpus == (ROOT / "seeds").resolve()
    # crosslingual asks the cmrc-train questions in English over the same, single copy of the corpus
    assert sets["crosslingual"].corpus == sets["cmrc-train"].corpus == (ROOT / "evals/cmrc-train/corpus").resolve()
    assert not (ROOT / "evals" / "crosslingual" / "corpus").exists()
    assert sets["crosslingual-drcd"].corpus == sets["drcd"].corpus
    assert not (ROOT / "evals" / "crosslingual-drcd" / "corpus").exists()
    for s in sets.values():
        assert s.questions.is_file() and s.corpus.is_dir()
    # the English documents are judged by rag eval, not learned from by the fit scripts
    assert [s.name for s in fit_sets(ROOT / "evals" / "sets.toml")] == [
        "seed", "seed-heldout", "seed-unseen", "cmrc-train", "crosslingual", "drcd"]


def _write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "body, message",
    [
        ("[[set]\nname=", "not valid TOML"),
        ("title = 'x'\n", "at least one [[set]]"),
        ("[[set]]\nname = 'a'\nquestions = 'q.jsonl'\n", '"corpus" must be a non-empty string'),
        ("[[set]]\nname = 'a'\nquestions = 'q.jsonl'\ncorpus = 'nope'\n", "corpus folder not found"),
        ("[[set]]\nname = 'a'\nquestions = 'missing.jsonl'\ncorpus = 'docs'\n", "questions file not found"),
        ("[[set]]\nname = 'a b'\nquestions = 'q.jsonl'\ncorpus = 'docs'\n", "may only hold"),
        ("[[set]]\nname = 'a'\nquestions = 'q.jsonl'\ncorpus = 'docs'\nextra = 1\n", "unknown key"),
        ("[[set]]\nname = 'a'\nquestions = 'q.jsonl'\ncorpus = 'docs'\n" * 2, "used twice"),
        ("[[set]]\nname = 'a'\nquestions = 'q.jsonl'\ncorpus = 'docs'\nfit = 'no'\n", '"fit" must be true or false'),
    ],
)
def test_bad_manifest_is_a_clear_user_error(tmp_path, body, message):
    _write(tmp_path / "q.jsonl", '{"question": "x"}\n')
    (tmp_path / "docs").mkdir()
    manifest = _write(tmp_path / "sets.toml", body)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_manifest(manifest)


def test_missing_manifest_and_unknown_set(tmp_path):
    with pytest.raises(UserError, match="manifest not found"):
        load_manifest(tmp_path / "none.toml")
    sets = [EvalSet("a", tmp_path, tmp_path), EvalSet("b", tmp_path, tmp_path)]
    assert [s.name for s in select_sets(sets, "b")] == ["b"]
    assert [s.name for s in select_sets(sets, None)] == ["a", "b"]
    with pytest.raises(UserError, match="unknown eval set.*zz.*a, b"):
        select_sets(sets, "a,zz")


@pytest.fixture
def two_corpora(tmp_path):
    """Three sets: 'zh' and 'zh2' share the seed article's folder, 'other' has its own."""
    ev = tmp_path / "evals"
    (ev / "seeds").mkdir(parents=True)
    (ev / "seeds" / SEED.name).write_bytes(SEED.read_bytes())
    _write(ev / "other" / "a.txt", "东莞县\n\n东莞县是广东省的一个县，1985年撤县设市。\n")
    q = {"question": "东莞县何时撤县设市？", "lang": "zh-Hans", "evidence": ["1985年撤县设市"],
         "answer_must": [["1985"]], "answerable": True}
    _write(ev / "other.jsonl", json.dumps({"id": "o1", **q}, ensure_ascii=False) + "\n")
    seed_q = [json.loads(l) for l in (ROOT / "evals" / "questions.jsonl").read_text(encoding="utf-8").splitlines()[:4]]
    _write(ev / "zh.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed_q[:2]))
    _write(ev / "zh2.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed_q[2:]))
    manifest = _write(ev / "sets.toml", """
[[set]]
name = "zh"
questions = "zh.jsonl"
corpus = "seeds"

[[set]]
name = "other"
questions = "other.jsonl"
corpus = "other"

[[set]]
name = "zh2"
questions = "zh2.jsonl"
corpus = "seeds/"
""")
    return tmp_path, manifest


def test_run_sets_tables_combined_row_and_one_index_per_corpus(two_corpora, fake_embedder):
    base, manifest = two_corpora
    sets = load_manifest(manifest)
    settings = Settings(llm="extractive", index_dir=base / "unused", seeds_dir=base / "unused")
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False)
    summary = run_sets(sets, settings, base / "out", mode="extractive", console=console,
                       cache_dir=base / "cache", embedder=fake_embedder)
    text = buf.getvalue()
    # one table per set, then the combined tables
    for name in ("zh (extractive)", "other (extractive)", "zh2 (extractive)", "all sets (extractive)", "combined"):
        assert name in text, text
    assert list(summary["sets"]) == ["zh", "other", "zh2"]
    assert summary["combined"]["overall"]["n"] == 2 + 1 + 2
    assert summary["sets"]["other"]["overall"]["hit@1"] == 1.0
    for name in ("zh", "other", "zh2"):
        res = json.loads((base / "out" / name / "results.json").read_text(encoding="utf-8"))
        assert len(res["questions"]) == summary["sets"][name]["overall"]["n"]
    assert json.loads((base / "out" / "summary.json").read_text(encoding="utf-8"))["combined"]["overall"]["n"] == 5
    # zh and zh2 share one index: two corpora -> two cache entries, each chunk embedded once
    assert len([d for d in (base / "cache").iterdir() if d.is_dir()]) == 2
    first = fake_embedder.passages_embedded
    chunks = sum(len(open_set_assistant(s, settings, base / "cache", embedder=fake_embedder).searcher.keyword)
                 for s in sets[:2])
    assert first == chunks
    # a second run over the cache embeds nothing (incremental indexing)
    assert fake_embedder.passages_embedded == first
    run_sets(sets, settings, base / "out2", mode="extractive", cache_dir=base / "cache", embedder=fake_embedder)
    assert fake_embedder.passages_embedded == first


def test_changed_corpus_gets_a_new_index(two_corpora, fake_embedder):
    base, manifest = two_corpora
    other = [s for s in load_manifest(manifest) if s.name == "other"][0]
    settings = Settings(llm="extractive")
    a = open_set_assistant(other, settings, base / "cache", embedder=fake_embedder)
    _write(other.corpus / "b.txt", "新文件\n\n这是另一篇文章。\n")
    b = open_set_assistant(other, settings, base / "cache", embedder=fake_embedder)
    assert a.settings.index_dir != b.settings.index_dir
    assert set(b.searcher.keyword.source_counts()) == {"a.txt", "b.txt"}


def test_empty_corpus_is_a_user_error(tmp_path, fake_embedder):
    (tmp_path / "empty").mkdir()
    spec = EvalSet("e", tmp_path / "q.jsonl", tmp_path / "empty")
    with pytest.raises(UserError, match="no documents"):
        open_set_assistant(spec, Settings(llm="extractive"), tmp_path / "cache", embedder=fake_embedder)


def test_cli_eval_set_errors_are_clean(tmp_path):
    assert_clean_error(run_cli("eval", "--sets", "nope"), "unknown eval set")
    assert_clean_error(run_cli("eval", "--manifest", str(tmp_path / "x.toml")), "manifest not found")
    assert_clean_error(run_cli("eval", "evals/questions.jsonl", "--sets", "seed"), "not both")
    bad = _write(tmp_path / "sets.toml", "[[set]]\nname = 'a'\nquestions = 'q.jsonl'\ncorpus = 'gone'\n")
    _write(tmp_path / "q.jsonl", '{"question": "x"}\n')
    assert_clean_error(run_cli("eval", "--manifest", str(bad)), "corpus folder not found")
