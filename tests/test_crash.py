"""kill -9 in the middle of a rebuild leaves the previous index answering."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from rag.indexer import index_folder
from rag.retrieval import Searcher
from rag.store import ChunkStore
from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import sys, time, pathlib
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeEmbedder
    from rag.settings import Settings
    from rag.indexer import index_folder

    class Slow(FakeEmbedder):
        def embed_passages(self, texts, batch_callback=None):
            pathlib.Path({marker!r}).write_text("embedding")
            time.sleep(0.5)  # slow enough to be killed mid-way
            return super().embed_passages(texts)

    s = Settings(seeds_dir={seeds!r}, index_dir={index!r}, embed_batch_size=4, upsert_batch_size=4,
                 chroma_url={url!r})
    index_folder(s, Slow(), rebuild=True)
    """
)


def _start_until_embedding(template: str, s, tmp_path) -> subprocess.Popen:
    """Run an indexing script (SCRIPT or INCREMENTAL) in a child process and return once it
    has started embedding (its marker file exists), or has exited, or 120 s have passed."""
    marker = tmp_path / "marker"
    script = template.format(root=str(ROOT), marker=str(marker), seeds=str(s.seeds_dir), index=str(s.index_dir),
                             url=s.chroma_url)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_kill_during_rebuild_keeps_previous_index(settings_for, fake_embedder, workdir, tmp_path):
    s = settings_for()
    index_folder(s, fake_embedder)
    before = ChunkStore.current_build(s.index_dir)
    n_before = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).count()
    proc = _start_until_embedding(SCRIPT, s, tmp_path)
    time.sleep(1.2)  # a couple of batches written into the new build
    assert proc.poll() is None, "the rebuild finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # a half-built folder exists, but CURRENT still names the old build
    builds = sorted(p.name for p in s.index_dir.glob("build-*"))
    assert len(builds) == 2
    assert ChunkStore.current_build(s.index_dir) == before
    store = ChunkStore.open(s.index_dir, fake_embedder.name, chroma_url=s.chroma_url)
    assert store.count() == n_before
    hits = Searcher(s, store, fake_embedder).search("上海8月发布了什么？", 3)
    assert "上海市加快推動" in hits[0].chunk.text
    # the next run finishes normally and clears the abandoned build
    r = index_folder(s, fake_embedder)
    assert r.embedded == 0 and r.total_chunks == n_before
    assert [p.name for p in s.index_dir.glob("build-*")] == [before.name]
    index_folder(s, fake_embedder, rebuild=True)
    assert len(list(s.index_dir.glob("build-*"))) == 2  # new live build + the previous one


INCREMENTAL = textwrap.dedent(
    """
    import sys, time, pathlib
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeEmbedder
    from rag.settings import Settings
    from rag.indexer import index_folder

    class Slow(FakeEmbedder):
        calls = 0

        def embed_passages(self, texts, batch_callback=None):
            Slow.calls += 1
            if Slow.calls == 3:  # two batches are in Chroma by now
                pathlib.Path({marker!r}).write_text("embedding")
            time.sleep(0.5)
            return super().embed_passages(texts)

    s = Settings(seeds_dir={seeds!r}, index_dir={index!r}, embed_batch_size=2, upsert_batch_size=2,
                 chroma_url={url!r})
    index_folder(s, Slow())
    """
)


def test_kill_during_incremental_update_keeps_answering_and_next_run_repairs(settings_for, fake_embedder, workdir,
                                                                           tmp_path):
    """Killed after some vectors of a changed file were written: the live index still answers
    (CURRENT and the keyword index unchanged); the next run removes what the killed run
    wrote and indexes the file exactly once."""
    s = settings_for()
    seeds = workdir / "seeds"
    (seeds / "grow.txt").write_text("蚌埠市举办了龙虾节。", encoding="utf-8")
    index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    kw_before, n_before = store.manifest.keyword, store.count()
    (seeds / "grow.txt").write_text("\n\n".join(f"第{i}段讲蚌埠的第{i}件新事。" for i in range(12)), encoding="utf-8")
    proc = _start_until_embedding(INCREMENTAL, s, tmp_path)
    assert proc.poll() is None, "the update finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ChunkStore.open(s.index_dir, fake_embedder.name, chroma_url=s.chroma_url)
    assert store.manifest.keyword == kw_before and (store.build_dir / "journal.json").exists()
    assert store.count() > n_before  # vectors of the killed run are there...
    hits = Searcher(s, store, fake_embedder).search("上海8月发布了什么？", 3)
    assert "上海市加快推動" in hits[0].chunk.text  # ...and the index answers as before
    r = index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    assert not (store.build_dir / "journal.json").exists()
    grow = store.ids_by_source()["grow.txt"]
    assert len(grow) == 12 and store.count() == r.total_chunks == len(store.keyword_index())
