"""The stored keyword index: identical scores to the in-memory BM25 it replaces, kept
up to date incrementally, opened without tokenising; paged reads; unchanged files unread."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest

from rag.indexer import index_folder
from rag.keyword_index import KeywordIndex, NewDoc
from rag.retrieval import Searcher, query_tokens, tokenize
from rag.store import ChunkStore

QUESTIONS = ["上海8月发布了什么？", "溫州 人工智能局", "What did Shanghai announce in August?",
             "制造业 数字化 转型", "杭州", "没有这个词xyz"]


def reference_scores(chunks, question):
    """The keyword index as it was before it was stored: bm25s built in memory from
    tokenize(heading + text) of every chunk (copied from the previous rag/retrieval.py)."""
    import bm25s

    tokens = [tokenize(f"{c.heading} {c.text}") for c in chunks]
    vocab = {t for toks in tokens for t in toks}
    bm25 = bm25s.BM25(k1=1.2, b=0.75)
    bm25.index(tokens, show_progress=False)
    toks = [t for t in query_tokens(question) if t in vocab]
    if not toks:
        return np.zeros(len(chunks), dtype=np.float32)
    return np.asarray(bm25.get_scores(toks), dtype=np.float32)


def assert_same_as_reference(store: ChunkStore):
    chunks = store.all_chunks()
    kw = store.keyword_index()
    assert len(kw) == len(chunks)
    assert len(set(kw.chunk_ids())) == len(kw) and set(kw.chunk_ids()) == {c.id for c in chunks}
    for q in QUESTIONS:
        ref = reference_scores(chunks, q)
        got = kw.scores(query_tokens(q))
        mine = np.array([got[kw.doc_index(c.id)] for c in chunks], dtype=np.float32)
        assert np.array_equal(mine, ref), q  # bit for bit, not approximately
    # the chunks stored with the keyword index (what a search returns) are Chroma's
    assert all(kw.chunk(kw.doc_index(c.id)) == c for c in chunks)
    # the extractive answerer's term weights: document frequencies
    sets = [set(tokenize(f"{c.heading} {c.text}")) for c in chunks]
    for term in ["上海", "人工智能", "发布", "不存在的词"]:
        assert kw.doc_freq(term) == sum(term in s for s in sets)


def test_stored_keyword_index_scores_equal_in_memory_bm25_through_updates(settings_for, fake_embedder, workdir):
    s = settings_for()
    seeds = workdir / "seeds"
    (seeds / "extra.md").write_text("# 杭州\n\n第一段講蘇州和上海。\n\n第二段講杭州製造業。\n", encoding="utf-8")
    index_folder(s, fake_embedder)
    assert_same_as_reference(ChunkStore.open(s.index_dir, chroma_url=s.chroma_url))
    # add, change, remove: the updated index equals one built from scratch
    (seeds / "more.txt").write_text("上海8月发布了新的政策。温州也发布了。\n\n杭州没有。", encoding="utf-8")
    index_folder(s, fake_embedder)
    assert_same_as_reference(ChunkStore.open(s.index_dir, chroma_url=s.chroma_url))
    (seeds / "extra.md").write_text("# 合肥\n\n第一段講蘇州和上海。\n\n第二段改講合肥。\n", encoding="utf-8")
    index_folder(s, fake_embedder)
    assert_same_as_reference(ChunkStore.open(s.index_dir, chroma_url=s.chroma_url))
    (seeds / "more.txt").unlink()
    index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    assert_same_as_reference(store)
    assert "more.txt" not in store.keyword_index().source_counts()
    # only the live keyword folder, the previous one and the base segments they name are kept
    # (four updates ran: without clean-up there would be five folders)
    assert len(list(store.build_dir.glob("keyword-*"))) <= 4


def test_update_equals_build_on_random_corpora(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]

    def doc(i, src):
        return NewDoc(f"id{i}", src, [str(w) for w in rng.choice(words, size=int(rng.integers(0, 40)))])

    docs = [doc(i, f"s{i % 7}") for i in range(200)]
    kw = KeywordIndex.build(tmp_path / "a", docs)
    added = [doc(1000 + i, "s3") for i in range(15)]
    updated = kw.updated(tmp_path / "b", {"s3", "s5"}, added)
    final = [d for d in docs if d.source not in {"s3", "s5"}] + added
    scratch = KeywordIndex.build(tmp_path / "c", final)
    assert len(updated) == len(scratch) == len(final)
    for q in (["w1", "w2", "w1"], ["w299"], ["w5", "nope"]):
        a, b = updated.scores(q), scratch.scores(q)
        by_id = {updated.chunk_id(i): a[i] for i in range(len(a))}
        assert all(by_id[scratch.chunk_id(i)] == b[i] for i in range(len(b)))
    # the source being updated keeps only the new chunks
    assert updated.source_counts()["s3"] == 15 and "s5" not in updated.source_counts()


def _bm25s_scores(docs, query):
    """bm25s' own in-memory index over the token lists (the reference for bit-identical scores)."""
    import bm25s

    bm25 = bm25s.BM25(k1=1.2, b=0.75)
    bm25.index([d.tokens for d in docs], show_progress=False)
    vocab = {t for d in docs for t in d.tokens}
    toks = [t for t in query if t in vocab]
    return np.asarray(bm25.get_scores(toks), dtype=np.float32) if toks else np.zeros(len(docs), np.float32)


def test_small_updates_write_a_delta_with_scores_identical_to_bm25s(tmp_path):
    """Updates below the merge threshold write a small delta folder over the untouched base;
    scores, document frequencies and lookups equal an index of the same documents built by
    bm25s itself, through deletions, re-added ids, new tokens and a final merge."""
    from rag import keyword_index as ki

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(500)]

    def doc(i, src, extra=()):
        return NewDoc(f"id{i}", src, [str(w) for w in rng.choice(words, size=int(rng.integers(1, 40)))] + list(extra))

    docs = [doc(i, f"s{i % 50}") for i in range(1000)]
    kw = KeywordIndex.build(tmp_path / "keyword-0", docs)
    base_files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "keyword-0").iterdir()}
    steps = [
        ({"s3"}, [doc(2000 + i, "s3") for i in range(12)]),  # a changed file
        ({"s7"}, []),  # a removed file
        (set(), [doc(3000 + i, "new", ["brandnew", "w1"]) for i in range(5)]),  # new file, new token
        ({"s3"}, [doc(4000, "s3"), NewDoc("id2001", "s3", ["w2", "w2", "brandnew"])]),  # changed again, id kept
        ({"new"}, [doc(5000 + i, "s9") for i in range(3)]),
    ]
    live = list(docs)
    for n, (remove, add) in enumerate(steps, start=1):
        kw = kw.updated(tmp_path / f"keyword-{n}", remove, add)
        add_ids = {d.id for d in add}
        live = [d for d in live if d.source not in remove and d.id not in add_ids] + list(add)
        meta = json.loads((tmp_path / f"keyword-{n}" / "docs.json").read_text())
        assert meta["kind"] == "delta" and meta["base"] == "keyword-0"  # the base was not rewritten
        assert len(kw) == len(live) and kw.chunk_ids() == [d.id for d in live]
        for q in (["w1", "w2", "w1"], ["w499"], ["brandnew", "w5", "nope"], ["nope"]):
            ref = _bm25s_scores(live, q)
            got = kw.scores(q)
            mine = np.array([got[kw.doc_index(d.id)] for d in live], dtype=np.float32)
            assert np.array_equal(mine, ref), (n, q)
            assert not got[[i for i in range(len(got)) if kw.chunk_id(i) not in set(kw.chunk_ids())
                            or kw.doc_index(kw.chunk_id(i)) != i]].any()  # dead positions score 0
        for t in ("w1", "brandnew", "nope"):
            assert kw.doc_freq(t) == sum(t in d.tokens for d in live)
        assert kw.source_counts() == dict(Counter(d.source for d in live))
        assert kw.ids_of({"s3", "gone"}) == {"s3": {d.id for d in live if d.source == "s3"}}
        assert "brandnew" in kw.vocab or n < 3
        reopened = KeywordIndex.open(tmp_path / f"keyword-{n}")
        assert np.array_equal(reopened.scores(["w1", "brandnew"]), kw.scores(["w1", "brandnew"]))
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "keyword-0").iterdir()} == base_files
    assert kw.doc_index("id3") is None and "id7" not in kw  # removed with s3 and s7
    # past the merge threshold: one new base, identical scores
    big = [doc(6000 + i, "s11") for i in range(int(ki.MERGE_FRACTION * 1000) + 1)]
    kw = kw.updated(tmp_path / "keyword-merged", {"s11"}, big)
    live = [d for d in live if d.source != "s11"] + big
    assert json.loads((tmp_path / "keyword-merged" / "docs.json").read_text())["kind"] == "base"
    assert kw.chunk_ids() == [d.id for d in live]
    for q in (["w1", "w2", "w1"], ["brandnew", "w5"]):
        assert np.array_equal(kw.scores(q), _bm25s_scores(live, q))
    # clean-up keeps the live folder, the previous one and the bases they name
    ki.drop_old(tmp_path, {"keyword-merged", "keyword-5"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyword-0", "keyword-5", "keyword-merged"]


def test_opening_tokenises_nothing_and_reads_hits_only(settings_for, fake_embedder, monkeypatch):
    import rag.retrieval as retrieval

    s = settings_for()
    index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    calls = []
    real_tokenize = retrieval.tokenize
    monkeypatch.setattr(retrieval, "tokenize", lambda text: calls.append(text) or real_tokenize(text))
    monkeypatch.setattr(ChunkStore, "all_chunks", lambda self: pytest.fail("all chunks read"))
    monkeypatch.setattr(ChunkStore, "iter_chunks", lambda self: pytest.fail("all chunks read"))
    searcher = Searcher(s, store, fake_embedder)
    assert calls == []  # opening tokenised nothing
    # the hits' texts are stored with the keyword index: no second call to Chroma
    monkeypatch.setattr(ChunkStore, "get", lambda self, ids: pytest.fail("texts read from Chroma"))
    hits = searcher.search("上海8月发布了什么？", 5)
    assert "上海市加快推動" in hits[0].chunk.text
    assert len(calls) == 1  # the question only


def test_every_read_is_paged(settings_for, fake_embedder, workdir, monkeypatch):
    """With a page size of 7, no call to Chroma asks for more than 7 rows, and indexing,
    migration of an old index, search and status all still work."""
    from chromadb.api.models.Collection import Collection

    from rag.assistant import Assistant

    sizes = []
    real_get = Collection.get

    def get(self, ids=None, where=None, limit=None, offset=None, **kw):
        n = len(ids) if ids is not None else limit
        assert n is not None and n <= 7, f"unpaged read: ids={ids and len(ids)}, limit={limit}"
        sizes.append(n)
        return real_get(self, ids=ids, where=where, limit=limit, offset=offset, **kw)

    monkeypatch.setattr(Collection, "get", get)
    s = settings_for(chroma_page_size=7)
    r = index_folder(s, fake_embedder)
    assert r.total_chunks > 20
    store = ChunkStore.open(s.index_dir, page_size=7, chroma_url=s.chroma_url)
    assert len(store.all_chunks()) == r.total_chunks
    assert sum(len(v) for v in store.ids_by_source().values()) == r.total_chunks
    # an index from before keyword indexes were stored is migrated page by page
    import json

    manifest = json.loads((store.build_dir / "manifest.json").read_text())
    manifest["keyword"] = ""
    (store.build_dir / "manifest.json").write_text(json.dumps(manifest))
    a = Assistant(s, fake_embedder)
    hits = a.search("上海8月发布了什么？")
    assert "上海市加快推動" in hits[0].chunk.text and a.status()["chunks"] == r.total_chunks
    r2 = a.index()
    assert r2.embedded == 0 and r2.total_chunks == r.total_chunks
    assert ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).manifest.keyword
    assert sizes


def test_unchanged_files_are_not_read(settings_for, fake_embedder, workdir, monkeypatch):
    import rag.indexer as indexer

    s = settings_for()
    seeds = workdir / "seeds"
    for i in range(5):
        (seeds / f"f{i}.txt").write_text(f"第{i}个文件讲杭州的第{i}件事。", encoding="utf-8")
    index_folder(s, fake_embedder)
    reads = []
    real_load = indexer.load_document
    monkeypatch.setattr(indexer, "load_document", lambda p, root: reads.append(p.name) or real_load(p, root))
    r = index_folder(s, fake_embedder)
    assert reads == [] and r.embedded == 0 and r.unchanged == r.total_chunks
    # same bytes, new mtime: read once (sha256 equal), nothing embedded; then skipped again
    st = (seeds / "f2.txt").stat()
    os.utime(seeds / "f2.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = index_folder(s, fake_embedder)
    assert reads == ["f2.txt"] and r.embedded == 0 and (r.added, r.updated, r.removed) == (0, 0, 0)
    reads.clear()
    index_folder(s, fake_embedder)
    assert reads == []
    # new bytes: exactly that file is read and its chunk replaced
    (seeds / "f3.txt").write_text("第3个文件改讲温州。", encoding="utf-8")
    r = index_folder(s, fake_embedder)
    assert reads == ["f3.txt"] and (r.updated, r.removed, r.embedded) == (1, 1, 1)


def test_changed_file_refreshes_offsets_of_kept_chunks(settings_for, fake_embedder, workdir):
    s = settings_for()
    seeds = workdir / "seeds"
    (seeds / "x.txt").write_text("第一段讲苏州。\n\n第二段讲杭州。", encoding="utf-8")
    index_folder(s, fake_embedder)
    (seeds / "x.txt").write_text("新的开头。\n\n第一段讲苏州。\n\n第二段讲杭州。", encoding="utf-8")
    r = index_folder(s, fake_embedder)
    assert r.embedded == 1
    text = (seeds / "x.txt").read_text(encoding="utf-8")
    for c in ChunkStore.open(s.index_dir, chroma_url=s.chroma_url).all_chunks():
        if c.source == "x.txt":
            assert text[c.start : c.end] == c.text


def test_searcher_follows_an_index_written_by_another_process(settings_for, fake_embedder, workdir):
    from rag.assistant import Assistant

    s = settings_for(llm="extractive")
    index_folder(s, fake_embedder)
    reader = Assistant(s, fake_embedder)
    n = reader.status()["chunks"]
    assert not any("蚌埠" in h.chunk.text for h in reader.search("蚌埠 龙虾节"))
    (workdir / "seeds" / "new.txt").write_text("蚌埠市举办了第一届龙虾节。", encoding="utf-8")
    index_folder(s, fake_embedder)  # another writer: the reader is not told
    # the keyword index is followed at once; a Chroma server may show the new vector to
    # queries a moment later (under load it lagged: the chunk then tied with the best dense
    # hit), so rank 1 is waited for, briefly
    assert any("蚌埠" in h.chunk.text for h in reader.search("蚌埠 龙虾节"))
    assert _first_within("蚌埠", lambda: reader.search("蚌埠 龙虾节"))
    assert reader.status()["chunks"] == n + 1
    index_folder(s, fake_embedder, rebuild=True)  # a new build: followed too
    assert any("蚌埠" in h.chunk.text for h in reader.search("蚌埠 龙虾节"))
    assert _first_within("蚌埠", lambda: reader.search("蚌埠 龙虾节"))


def _first_within(needle: str, search, seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while True:
        hits = search()
        if hits and needle in hits[0].chunk.text:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_large_batches_are_tokenised_in_a_worker_process(settings_for, fake_embedder, monkeypatch, tmp_path):
    """The worker process gives the same tokens as tokenize() here, and a script without a
    __main__ guard can call the indexer (nothing re-imports the caller's main module)."""
    import subprocess
    import sys

    import rag.indexer as indexer
    from rag.tokenworker import TokenizerProcess
    from tests.conftest import ROOT

    texts = ["上海8月发布了什么？", "", "Wenzhou AI bureau 溫州人工智能局"] * 5
    assert TokenizerProcess([texts[:4], texts[4:]]).result() == [tokenize(t) for t in texts]
    monkeypatch.setattr(indexer._Tokenizer, "PROCESS_MIN", 1)
    monkeypatch.setattr(indexer._Tokenizer, "SLICE", 7)
    s = settings_for()
    r = index_folder(s, fake_embedder)
    assert_same_as_reference(ChunkStore.open(s.index_dir, chroma_url=s.chroma_url))
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from tests.conftest import FakeEmbedder\nimport rag.indexer as ix\nfrom rag.settings import Settings\n"
              "ix._Tokenizer.PROCESS_MIN = 1\n"
              f"r = ix.index_folder(Settings(seeds_dir={str(s.seeds_dir)!r}, index_dir={str(s.index_dir)!r}, "
              f"chroma_url={s.chroma_url!r}), FakeEmbedder(), rebuild=True)\nprint(r.total_chunks)\n")
    (tmp_path / "user_script.py").write_text(script)  # a file: multiprocessing would re-import it
    out = subprocess.run([sys.executable, str(tmp_path / "user_script.py")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == r.total_chunks


def test_bridge_reads_term_positions_and_texts_from_the_live_index(settings_for, fake_embedder, workdir,
                                                                    monkeypatch):
    """The English bridge's CorpusVocab sees which chunks hold a term and their texts (from
    the stored keyword index; from Chroma for an index that stores none)."""
    (workdir / "seeds" / "name.txt").write_text("罗彦瓌，太原人，北宋时军事将领。\n", encoding="utf-8")
    s = settings_for()
    index_folder(s, fake_embedder)
    store = ChunkStore.open(s.index_dir, chroma_url=s.chroma_url)
    searcher = Searcher(s, store, fake_embedder)
    vocab = searcher.vocab
    pos = vocab.positions("罗彦")
    assert len(pos) == 1 and "罗彦瓌" in vocab.chunks.texts(pos.tolist())[0]
    assert len(vocab.positions("没有这个词")) == 0
    assert vocab.name_runs("luoyangui") == ["罗彦瓌"]
    # an older keyword index without texts: the texts come from Chroma
    monkeypatch.setattr(KeywordIndex, "chunk", lambda self, i: None)
    assert "罗彦瓌" in vocab.chunks.texts(pos.tolist())[0]


def test_question_tokens_no_document_holds_are_searched_by_their_characters():
    from rag.retrieval import _with_pieces

    class Vocab:  # doc_freq of the documents' tokens (元 / 详 / 封 / 北海 / 王 / 时间 / 一年 ...)
        df = {"元": 3, "详": 2, "封": 3, "北海": 4, "王": 6, "一年": 8, "时间": 5, "跨": 1}

        def doc_freq(self, t):
            return self.df.get(t, 0)

    toks = tokenize("元详封北海王是哪一年？")
    assert "详封" in toks and "王是" in toks  # jieba glued words no document holds
    out = _with_pieces(toks, Vocab())
    assert out[:len(toks)] == toks
    assert {"详", "封", "王"} <= set(out[len(toks):])
    assert "是" not in out[len(toks):]  # stopwords stay out
    # an unknown compound holding a known word is left to that word
    toks = ["时间", "时间跨度"]
    assert _with_pieces(toks, Vocab()) == toks
    # every token known: nothing added
    assert _with_pieces(["北海", "王"], Vocab()) == ["北海", "王"]
