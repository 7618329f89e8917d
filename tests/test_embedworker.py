"""The niced embedding worker that background indexing (uploads) uses: same vectors as the
in-process model, lowest CPU priority, restarts after it exits, falls back when it cannot start."""
from __future__ import annotations

import os

import numpy as np
import pytest

from rag.embedworker import EmbedderProcess

TEXTS = ["上海市在8月发布了人工智能产业规划。", "What did Shanghai announce in August?", "臺灣的半導體產業"] * 5


@pytest.fixture
def worker(real_assistant):
    w = EmbedderProcess(real_assistant.settings, real_assistant.embedder)
    yield w
    w.close()


def test_worker_vectors_equal_in_process_and_worker_is_niced(worker, real_assistant):
    done = []
    got = worker.embed_passages(TEXTS, batch_callback=done.append)
    want = real_assistant.embedder.embed_passages(TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert done and done[-1] == len(TEXTS)
    pid = worker._proc.pid
    assert pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) == 19


def test_worker_is_replaced_after_it_dies(worker, real_assistant):
    worker.embed_passages(TEXTS[:2])
    first = worker._proc
    first.kill()
    first.wait()
    got = worker.embed_passages(TEXTS[:3])
    assert worker._proc is not first and worker._proc.poll() is None
    np.testing.assert_allclose(got, real_assistant.embedder.embed_passages(TEXTS[:3]), atol=1e-6)


def test_idle_worker_exits_by_itself(real_assistant):
    w = EmbedderProcess(real_assistant.settings, real_assistant.embedder, idle_s=0.5)
    try:
        w.embed_passages(TEXTS[:1])
        proc = w._proc
        proc.wait(timeout=60)  # would time out if the worker never left
        assert proc.returncode == 0
        np.testing.assert_allclose(w.embed_passages(TEXTS[:2]), real_assistant.embedder.embed_passages(TEXTS[:2]),
                                   atol=1e-6)
    finally:
        w.close()


def test_worker_that_cannot_load_the_model_falls_back_to_this_process(real_assistant, caplog):
    bad = real_assistant.settings.model_copy(update={"embed_model": "/nonexistent/model"})
    w = EmbedderProcess(bad, real_assistant.embedder)
    try:
        got = w.embed_passages(TEXTS[:4])
    finally:
        w.close()
    np.testing.assert_allclose(got, real_assistant.embedder.embed_passages(TEXTS[:4]), atol=1e-6)
    assert "instead of the worker" in caplog.text


def test_upload_is_embedded_by_the_worker_and_becomes_searchable(real_assistant):
    marker = "蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办，展出了四十二台水下无人机。"
    report = real_assistant.add_document("worker-upload.txt", ("前言。\n" + marker + "\n").encode())
    try:
        assert report.embedded >= 1
        worker = real_assistant._embed_worker
        assert worker is not None and worker._proc is not None and worker._proc.poll() is None
        hits = real_assistant.search("挪威特罗姆瑟的机器人博览会展出了多少台水下无人机？", k=3)
        assert hits and hits[0].chunk.source == report.saved_as
    finally:
        (real_assistant.settings.seeds_dir / report.saved_as).unlink()
        real_assistant.index()
        real_assistant.close()
    assert real_assistant._embed_worker is None and worker._proc is None
