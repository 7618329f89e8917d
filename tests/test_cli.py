"""CLI user errors: one clear line on stderr, non-zero exit, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_cli(*args, env=None, cwd=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=e, cwd=cwd or ROOT, timeout=timeout
    )


def assert_clean_error(proc, pattern):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and pattern in lines[0], lines[0]


def test_empty_question(tmp_path):
    assert_clean_error(run_cli("ask", "   ", env={"RAG_INDEX_DIR": str(tmp_path)}), "empty")


def test_no_index_yet(tmp_path):
    assert_clean_error(run_cli("ask", "上海8月发布了什么？", env={"RAG_INDEX_DIR": str(tmp_path / "none")}), "rag index")


def test_bad_k():
    proc = run_cli("ask", "x", "-k", "0")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "-k" in proc.stderr


def test_model_not_prepared(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "a.txt").write_text("上海。", encoding="utf-8")
    proc = run_cli(
        "index",
        env={"RAG_MODEL_DIR": str(tmp_path / "nomodels"), "RAG_SEEDS_DIR": str(seeds), "RAG_INDEX_DIR": str(tmp_path / "ix")},
    )
    assert_clean_error(proc, "rag models prepare")


def test_missing_seeds_folder(tmp_path):
    proc = run_cli("index", env={"RAG_SEEDS_DIR": str(tmp_path / "nope"), "RAG_INDEX_DIR": str(tmp_path / "ix")})
    assert_clean_error(proc, "not found")


def test_bad_eval_file(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "1", "question": "ok"}\nnot json\n', encoding="utf-8")
    assert_clean_error(run_cli("eval", str(bad)), "not valid JSON")
    assert_clean_error(run_cli("eval", str(tmp_path / "missing.jsonl")), "not found")


def test_invalid_setting(tmp_path):
    assert_clean_error(run_cli("ask", "x", env={"RAG_TOP_K": "many"}), "invalid settings")
