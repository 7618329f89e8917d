"""The keyword side of hybrid search: BM25 (bm25s) over chunk tokens, kept on disk.

Tokens are computed once per chunk at index time; the index lives in a folder of the build,
is memory-mapped when opened (nothing is tokenised) and is rewritten, never edited, when files change.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

K1, B = 1.2, 0.75  # the BM25 parameters the in-memory index used (bm25s "lucene" method)
_DOCS = "docs.json"  # source names and format version; the arrays are .npy files beside it
FORMAT = 3


@dataclass
class NewDoc:
    """A chunk to add: its id, source and search tokens (rag.retrieval.tokenize of heading + text)."""

    id: str
    source: str
    tokens: list[str]


def _float_mode() -> np.dtype:
    # bm25s computes k1*(1-b+b*len/avg) as a numpy float64 scalar and adds the float32
    # term frequencies to it; numpy 2 keeps that in float64, numpy 1 in float32. Match it
    # so that the stored scores are bit-identical to bm25s' own index.
    return (np.float64(1.0) + np.ones(1, dtype=np.float32)).dtype


def bm25_data(indptr: np.ndarray, indices: np.ndarray, tf: np.ndarray, doc_len: np.ndarray) -> np.ndarray:
    """The bm25s score of every (token, document) posting of a token-major (csc) layout,
    computed with bm25s' own formulas and dtypes, vectorised: bm25s builds the same matrix
    (same sparsity, same values) from token lists, document by document."""
    n_docs = len(doc_len)
    df = np.diff(indptr)
    # idf as bm25s does it: math.log in double per token, stored as float32 (np.log may
    # differ from libm in the last bit, so compute once per distinct df with math.log)
    distinct = np.unique(df)
    idf_d = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) for d in distinct.tolist()], dtype=np.float32)
    idf = idf_d[np.searchsorted(distinct, df)]
    avg = np.asarray(doc_len, dtype=np.int64).mean()
    # the term-frequency part depends on (document length, tf) only: a small table,
    # then one gather per posting (a few passes over flat arrays, no per-posting arithmetic
    # in float64 beyond the final product bm25s itself does)
    lens, len_code = np.unique(doc_len, return_inverse=True)
    width = (int(tf.max()) if len(tf) else 0) + 1
    mode = _float_mode()
    denom = (K1 * ((1 - B) + B * lens.astype(np.float64) / avg)).astype(mode)
    tfs = np.arange(width, dtype=np.float32).astype(mode)
    table = (tfs[None, :] / (denom[:, None] + tfs[None, :])).ravel()
    code = (len_code.reshape(-1).astype(np.int32) * np.int32(width))[indices]
    code += tf
    out = table[code]
    out *= np.repeat(idf.astype(mode), df)
    return out.astype(np.float32)


class KeywordIndex:
    """BM25 over chunk tokens. `scores(query_tokens)` gives one score per document of the
    index, in the order of `ids`; `doc_index(chunk_id)` maps back."""

    def __init__(self, path: Path | None, ids: np.ndarray, src: np.ndarray, sources: list[str],
                 ids_sorted: np.ndarray, ids_order: np.ndarray):
        self.path = path
        self.ids = ids
        self.src = src
        self.sources = sources
        self._ids_sorted = ids_sorted
        self._ids_order = ids_order
        self._bm25 = None
        self._vocab_sorted = self._vocab_ids = None
        self._lock = threading.Lock()

    @property
    def bm25(self):
        """The bm25s index, memory-mapped on first use (None when there are no chunks):
        an index run that changes nothing never loads it."""
        if self._bm25 is None and self.path is not None and len(self.ids):
            with self._lock:
                if self._bm25 is None:
                    import bm25s

                    # the vocabulary is looked up in sorted arrays (below), not parsed from JSON
                    self._bm25 = bm25s.BM25.load(str(self.path / "bm25"), mmap=True, load_vocab=False)
        return self._bm25

    def token_ids(self, tokens: list[str]) -> list[int]:
        """Vocabulary ids of the tokens that are in it, in order (duplicates kept, as bm25s does)."""
        if self.path is None or not len(self.ids):
            return []
        if self._vocab_sorted is None:
            self._vocab_sorted = np.load(self.path / "vocab_tokens.npy", mmap_mode="r")
            self._vocab_ids = np.load(self.path / "vocab_ids.npy", mmap_mode="r")
        keys = np.array([t.encode() for t in tokens], dtype=self._vocab_sorted.dtype) if tokens else None
        if keys is None:
            return []
        pos = np.searchsorted(self._vocab_sorted, keys)
        out = []
        for t, k, j in zip(tokens, keys, pos.tolist()):
            # a token longer than the widest stored one is truncated by the dtype: not a match
            if j < len(self._vocab_sorted) and self._vocab_sorted[j] == k and len(t.encode()) <= keys.itemsize:
                out.append(int(self._vocab_ids[j]))
        return out

    @property
    def vocab(self) -> dict[str, int]:
        """The whole vocabulary as a dict (for writing an updated index)."""
        if self.path is None or not len(self.ids):
            return {}
        toks = np.load(self.path / "vocab_tokens.npy")
        ids = np.load(self.path / "vocab_ids.npy")
        return {t.decode(): int(i) for t, i in zip(toks.tolist(), ids.tolist())}

    # ---- reading ---------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "KeywordIndex":
        """Memory-map a saved index (tokenises nothing, reads no chunk text)."""
        meta = json.loads((path / _DOCS).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"keyword index format {meta.get('format')} in {path}")
        load = lambda name: np.load(path / name, mmap_mode="r")  # noqa: E731
        return cls(path, load("ids.npy"), load("src.npy"), meta["sources"], load("ids_sorted.npy"),
                   load("ids_order.npy"))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        ids = self.token_ids(query_tokens)
        if not ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)

    def top(self, scores: np.ndarray, n: int) -> list[int]:
        """Indexes of the n best positive scores, best first (ties by document order)."""
        pos = np.flatnonzero(scores > 0)
        if len(pos) > n:
            part = np.argpartition(-scores[pos], n - 1)[:n]
            # keep every document tied with the n-th score, then cut after sorting
            cut = scores[pos[part]].min()
            pos = pos[scores[pos] >= cut]
        order = np.lexsort((pos, -scores[pos]))
        return [int(i) for i in pos[order][:n]]

    def chunk_id(self, i: int) -> str:
        return self.ids[i].decode()

    def doc_index(self, chunk_id: str) -> int | None:
        key = chunk_id.encode()
        j = int(np.searchsorted(self._ids_sorted, key))
        if j < len(self._ids_sorted) and self._ids_sorted[j] == key:
            return int(self._ids_order[j])
        return None

    def __contains__(self, chunk_id: str) -> bool:
        return self.doc_index(chunk_id) is not None

    def doc_freq(self, term: str) -> int:
        """How many chunks contain the term (the extractive answerer weighs terms by it)."""
        ids = self.token_ids([term])
        if not ids:
            return 0
        t = ids[0]
        indptr = self.bm25.scores["indptr"]
        return int(indptr[t + 1] - indptr[t])

    def ids_by_source(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for i, s in zip(self.ids.tolist(), self.src.tolist()):
            out.setdefault(self.sources[s], set()).add(i.decode())
        return out

    def ids_of(self, sources: Iterable[str]) -> dict[str, set[str]]:
        wanted = {s: k for k, s in enumerate(self.sources) if s in set(sources)}
        out: dict[str, set[str]] = {s: set() for s in wanted}
        if not wanted:
            return out
        codes = np.array(list(wanted.values()), dtype=np.int32)
        rows = np.flatnonzero(np.isin(self.src, codes))
        for r in rows.tolist():
            out[self.sources[int(self.src[r])]].add(self.ids[r].decode())
        return out

    def source_counts(self) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.src), minlength=len(self.sources))
        return {s: int(c) for s, c in zip(self.sources, counts.tolist()) if c}

    # ---- writing ---------------------------------------------------------
    def updated(self, folder: Path, remove_sources: Iterable[str], add: Sequence[NewDoc]) -> "KeywordIndex":
        """A new index in `folder`: this one without the chunks of `remove_sources`, plus `add`
        (which may re-add chunks of a removed source). This index is left untouched.

        Postings are kept token-major (the layout bm25s scores from), so removing and adding
        documents is a filter and an insert over flat arrays, never a re-sort; the scores
        are then recomputed (every score depends on the number of documents and their mean length)."""
        from collections import Counter

        remove = set(remove_sources)
        n_old = len(self.ids)
        keep = np.ones(n_old, dtype=bool)
        if remove and n_old:
            codes = [k for k, s in enumerate(self.sources) if s in remove]
            keep &= ~np.isin(self.src, np.array(codes, dtype=np.int32))
        if add and n_old:
            keep &= ~np.isin(self.ids, np.array(sorted({d.id.encode() for d in add})))
        indptr, indices, tf, doc_len = self._postings()
        vocab = dict(self.vocab)
        n_vocab_old = len(indptr) - 1
        # drop removed documents and renumber the rest (a monotone map keeps columns sorted)
        if not keep.all():
            alive = keep[indices]
            tok_of = np.repeat(np.arange(n_vocab_old, dtype=np.int32), np.diff(indptr))[alive]
            remap = np.cumsum(keep, dtype=np.int64) - 1
            indices = remap[indices[alive]].astype(np.int32)
            tf = tf[alive]
            indptr = np.zeros(n_vocab_old + 1, dtype=np.int64)
            np.cumsum(np.bincount(tok_of, minlength=n_vocab_old), out=indptr[1:])
            doc_len = doc_len[keep]
        n_kept = int(keep.sum())
        # new documents: term counts, new tokens appended to the vocabulary
        new_tok: list[int] = []
        new_cnt: list[int] = []
        new_doc: list[int] = []
        for j, d in enumerate(add):
            counts = Counter(d.tokens)
            for t, c in counts.items():
                v = vocab.get(t)
                if v is None:
                    v = vocab[t] = len(vocab)
                new_tok.append(v)
                new_cnt.append(c)
            new_doc.extend([n_kept + j] * len(counts))
        n_vocab = len(vocab)
        if n_vocab > n_vocab_old:
            indptr = np.concatenate([indptr, np.full(n_vocab - n_vocab_old, indptr[-1], dtype=np.int64)])
        if new_tok:
            nt = np.array(new_tok, dtype=np.int64)
            nd = np.array(new_doc, dtype=np.int32)
            order = np.lexsort((nd, nt))
            nt, nd, nc = nt[order], nd[order], np.array(new_cnt, dtype=np.int32)[order]
            # each new posting goes at the end of its token's column (its document is the newest)
            at = indptr[nt + 1]
            indices = np.insert(indices, at, nd)
            tf = np.insert(tf, at, nc)
            indptr = indptr.copy()
            indptr[1:] += np.cumsum(np.bincount(nt, minlength=n_vocab))
        ids = np.concatenate([np.asarray(self.ids)[keep].astype(object), [d.id.encode() for d in add]])
        width = max([len(i) for i in ids] + [1])
        src_names = list(self.sources)
        src_code = {s: k for k, s in enumerate(src_names)}
        for d in add:
            if d.source not in src_code:
                src_code[d.source] = len(src_names)
                src_names.append(d.source)
        src = np.concatenate([np.asarray(self.src)[keep], np.array([src_code[d.source] for d in add], dtype=np.int32)])
        doc_len = np.concatenate([doc_len, np.array([len(d.tokens) for d in add], dtype=np.int32)])
        return _write(folder, vocab, np.array(ids.tolist(), dtype=f"S{width}"), src.astype(np.int32), src_names,
                      doc_len.astype(np.int32), indptr, indices.astype(np.int32), tf.astype(np.int32))

    def _postings(self):
        if self.path is None or not len(self.ids):
            z = np.zeros(0, dtype=np.int32)
            return np.zeros(len(self.vocab) + 1, dtype=np.int64), z, z, z
        p = self.path
        return (np.load(p / "bm25" / "indptr.csc.index.npy").astype(np.int64), np.load(p / "bm25" / "indices.csc.index.npy"),
                np.load(p / "tf.npy"), np.load(p / "doc_len.npy"))

    @classmethod
    def empty(cls) -> "KeywordIndex":
        z = np.zeros(0, dtype="S1")
        return cls(None, z, np.zeros(0, dtype=np.int32), [], z, np.zeros(0, dtype=np.int32))

    @classmethod
    def build(cls, folder: Path, docs: Sequence[NewDoc]) -> "KeywordIndex":
        return cls.empty().updated(folder, (), docs)


def _write(folder: Path, vocab: dict[str, int], ids, src, sources, doc_len, indptr, indices, tf) -> KeywordIndex:
    """Write a complete index into a fresh folder (it becomes live only when the
    manifest names it)."""
    import bm25s

    folder.mkdir(parents=True, exist_ok=False)
    # drop sources that no longer have chunks, so the list does not grow forever
    used = np.unique(src) if len(src) else np.zeros(0, dtype=np.int32)
    remap = np.full(len(sources) + 1, -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    src = remap[src] if len(src) else src
    sources = [sources[i] for i in used.tolist()]
    n_docs = len(ids)
    if n_docs:
        bm25 = bm25s.BM25(k1=K1, b=B)
        bm25.scores = {"data": bm25_data(indptr, indices, tf, doc_len), "indices": indices, "indptr": indptr,
                       "num_docs": n_docs}
        bm25.vocab_dict = vocab
        bm25.nonoccurrence_array = None  # the lucene method has none
        bm25.save(str(folder / "bm25"))
        toks = np.array([t.encode() for t in vocab], dtype=bytes)
        vorder = np.argsort(toks, kind="stable")
        np.save(folder / "vocab_tokens.npy", toks[vorder])
        np.save(folder / "vocab_ids.npy", np.array(list(vocab.values()), dtype=np.int32)[vorder])
    order = np.argsort(ids, kind="stable").astype(np.int32)
    for name, arr in (("ids.npy", ids), ("src.npy", src), ("tf.npy", tf.astype(np.int32)), ("doc_len.npy", doc_len),
                      ("ids_sorted.npy", ids[order]), ("ids_order.npy", order)):
        np.save(folder / name, arr)
    (folder / _DOCS).write_text(json.dumps({"format": FORMAT, "n_docs": n_docs, "sources": sources},
                                           ensure_ascii=False), encoding="utf-8")
    _fsync_tree(folder)
    return KeywordIndex.open(folder)


def _fsync_tree(folder: Path) -> None:
    """Make the files durable before the manifest points at them (kill -9, power loss)."""
    for root, _dirs, files in os.walk(folder):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def new_folder(build_dir: Path) -> Path:
    return build_dir / f"keyword-{uuid.uuid4().hex[:12]}"


def drop_old(build_dir: Path, keep: set[str]) -> None:
    """Remove keyword folders other than `keep` (the live one and the previous one:
    a reader may have just read the old manifest)."""
    for d in build_dir.glob("keyword-*"):
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
