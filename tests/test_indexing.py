"""Incremental indexing against real Chroma (fake embedder for speed)."""
from __future__ import annotations

import json

import pytest

from rag.indexer import index_folder
from rag.store import ChunkStore
from rag.types import UserError


def test_incremental_reindex_embeds_nothing_when_unchanged(settings_for, fake_embedder):
    s = settings_for()
    r1 = index_folder(s, fake_embedder)
    assert r1.added == r1.total_chunks > 40 and r1.embedded == r1.added
    counts = [r1.total_chunks]
    for _ in range(2):
        before = fake_embedder.passages_embedded
        r = index_folder(s, fake_embedder)
        assert r.embedded == 0 and fake_embedder.passages_embedded == before
        assert (r.added, r.updated, r.removed) == (0, 0, 0)
        assert r.unchanged == r1.total_chunks
        counts.append(r.total_chunks)
    assert len(set(counts)) == 1


def test_changed_and_removed_files_update_exactly_their_chunks(settings_for, fake_embedder, workdir):
    s = settings_for()
    seeds = workdir / "seeds"
    (seeds / "extra.md").write_text("# 標題\n\n第一段講蘇州。\n\n第二段講杭州。\n", encoding="utf-8")
    r1 = index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    extra_ids = store.ids_by_source()["extra.md"]
    assert len(extra_ids) == 2
    # change one paragraph: one chunk updated, one removed, the rest unchanged
    (seeds / "extra.md").write_text("# 標題\n\n第一段講蘇州。\n\n第二段改講合肥。\n", encoding="utf-8")
    r2 = index_folder(s, fake_embedder)
    assert (r2.added, r2.updated, r2.removed, r2.embedded) == (0, 1, 1, 1)
    assert r2.total_chunks == r1.total_chunks
    texts = {c.text for c in ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).all_chunks() if c.source == "extra.md"}
    assert texts == {"第一段講蘇州。", "第二段改講合肥。"}
    # remove the file: exactly its chunks go
    (seeds / "extra.md").unlink()
    r3 = index_folder(s, fake_embedder)
    assert (r3.removed, r3.embedded) == (2, 0)
    assert "extra.md" not in ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).ids_by_source()


def test_chunks_made_by_older_cleaning_or_another_size_are_made_again(settings_for, fake_embedder, workdir):
    from rag.chunking import TEXT_VERSION

    s = settings_for()
    r1 = index_folder(s, fake_embedder)
    build = ChunkStore.current_build(s.index_dir)
    assert json.loads((build / "manifest.json").read_text())["text_version"] == TEXT_VERSION
    # an index made before the damaged-pinyin fix: its chunk of that sentence was cut at the `?`
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    whole = [c for c in store.all_chunks() if "姿態競爭" in c.text and "質量競賽" in c.text]
    assert whole  # the sentence is whole now
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").write_text(json.dumps({**manifest, "text_version": 1}), encoding="utf-8")
    before = fake_embedder.passages_embedded
    r2 = index_folder(s, fake_embedder)
    # every file read again; chunks that did not change keep their vectors
    assert r2.embedded == 0 and fake_embedder.passages_embedded == before
    assert r2.unchanged == r1.total_chunks == r2.total_chunks
    assert json.loads((build / "manifest.json").read_text())["text_version"] == TEXT_VERSION
    # another chunk size: the files are chunked again to it
    r3 = index_folder(settings_for(chunk_max_chars=120), fake_embedder)
    assert r3.total_chunks > r1.total_chunks and r3.embedded > 0
    assert max(len(c.text) for c in ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).all_chunks()) <= 120
    assert json.loads((build / "manifest.json").read_text())["chunk_max_chars"] == 120
    r4 = index_folder(settings_for(chunk_max_chars=120), fake_embedder)
    assert r4.embedded == 0 and r4.total_chunks == r3.total_chunks


def test_unreadable_file_is_reported_and_keeps_its_chunks(settings_for, fake_embedder, workdir):
    s = settings_for()
    seeds = workdir / "seeds"
    (seeds / "note.txt").write_text("溫州市人工智能局是全國首個市級人工智能管理機構。", encoding="utf-8")
    index_folder(s, fake_embedder)
    (seeds / "note.txt").write_bytes(b"\x00\x01binary\x00" * 10)
    r = index_folder(s, fake_embedder)
    assert r.errors and "note.txt" in r.errors[0]
    assert r.removed == 0
    assert "note.txt" in ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).ids_by_source()


def test_rebuild_switches_atomically_and_keeps_model_record(settings_for, fake_embedder):
    s = settings_for()
    index_folder(s, fake_embedder)
    first = ChunkStore.current_build(s.index_dir)
    r = index_folder(s, fake_embedder, rebuild=True)
    second = ChunkStore.current_build(s.index_dir)
    assert second != first and r.rebuilt and r.embedded == r.total_chunks
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["embed_model"] == fake_embedder.name and manifest["files"]


def test_other_embedding_model_is_a_clear_error(settings_for, fake_embedder):
    from tests.conftest import FakeEmbedder

    s = settings_for()
    index_folder(s, fake_embedder)
    with pytest.raises(UserError, match="rebuild"):
        index_folder(s, FakeEmbedder("another-model"))
    with pytest.raises(UserError, match="built with embedding model"):
        ChunkStore.open(s.index_dir, "another-model")


def test_no_index_is_a_clear_error(settings_for):
    with pytest.raises(UserError, match="rag index"):
        ChunkStore.open(settings_for().index_dir)


def test_hybrid_search_finds_shanghai_with_fake_dense(settings_for, fake_embedder):
    from rag.retrieval import Searcher

    s = settings_for()
    index_folder(s, fake_embedder)
    searcher = Searcher(s, ChunkStore.open(s.index_dir, chroma_url=s.chroma_url), fake_embedder)
    hits = searcher.search("上海8月发布了什么？", 5)
    assert "上海市加快推動" in hits[0].chunk.text
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].keyword_score and hits[0].keyword_score > 0


def test_the_collection_searches_wide_enough_for_its_candidates_also_when_built_before(settings_for, fake_embedder):
    """Chroma's default HNSW search breadth equals the 100 candidates the searcher asks for,
    and the tail of that list then changes from one process to the next. The store raises it
    on open, for an index built before too, and keeps the cosine space."""
    from rag.store import SEARCH_EF, forget_open_clients

    s = settings_for()
    index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    hnsw = store.collection.configuration_json["hnsw"]
    assert hnsw["ef_search"] == SEARCH_EF >= 2 * s.dense_candidates and hnsw["space"] == "cosine"
    n = store.collection.count()
    # as an index built with Chroma's default breadth is
    store.collection.modify(configuration={"hnsw": {"ef_search": 100}})
    forget_open_clients()
    reopened = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    hnsw = reopened.collection.configuration_json["hnsw"]
    assert hnsw["ef_search"] == SEARCH_EF and hnsw["space"] == "cosine" and reopened.collection.count() == n
