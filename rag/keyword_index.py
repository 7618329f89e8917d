"""The keyword side of hybrid search: BM25 over chunk tokens, kept on disk as term counts.

A large base segment (memory-mapped) plus a small delta segment with a deletion mask of the
base: an update writes only the delta; BM25 is scored at query time from the stored counts.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

K1, B = 1.2, 0.75  # the BM25 parameters the in-memory index used (bm25s "lucene" method)
_DOCS = "docs.json"  # kind, sources and format version; the arrays are .npy files beside it
FORMAT = 4
_READABLE = (3, 4)  # format 3: one segment, postings in bm25s' folder layout
# The delta (plus the deleted base documents) is merged into a new base when it grows past
# this fraction of the base: below it an update writes a small folder, above it the query-time
# cost of a second segment and the dead postings of the base are no longer small.
MERGE_FRACTION = 0.10


@dataclass
class NewDoc:
    """A chunk to add: its id, source and search tokens (rag.retrieval.tokenize of heading + text)."""

    id: str
    source: str
    tokens: list[str]


@dataclass
class EncodedDocs:
    """Chunks to add in compact form: each document's tokens as codes into `vocab`, all
    documents' codes concatenated (`lens` tokens each). No Python string per token: at 100k
    chunks that is ten million strings, most of an indexer's memory and time."""

    ids: list[str]
    sources: list[str]
    vocab: list[str]
    codes: np.ndarray  # int32
    lens: np.ndarray  # int32, tokens per document (duplicates counted: the BM25 length)
    chunks: list | None = None  # the rag.types.Chunk of each document, stored for the hits' texts

    @classmethod
    def from_docs(cls, docs: Sequence[NewDoc]) -> "EncodedDocs":
        vocab: dict[str, int] = {}
        codes = [vocab.setdefault(t, len(vocab)) for d in docs for t in d.tokens]
        return cls([d.id for d in docs], [d.source for d in docs], list(vocab), np.array(codes, dtype=np.int32),
                   np.array([len(d.tokens) for d in docs], dtype=np.int32))

    @classmethod
    def join(cls, ids: list[str], sources: list[str], parts: Sequence[tuple[list[str], np.ndarray, np.ndarray]],
             chunks: list | None = None) -> "EncodedDocs":
        """One EncodedDocs from per-batch (vocab, codes, lens) of consecutive documents."""
        vocab: dict[str, int] = {}
        codes, lens = [], []
        for v, c, n in parts:
            m = np.array([vocab.setdefault(t, len(vocab)) for t in v], dtype=np.int32)
            codes.append(m[c] if len(c) else np.zeros(0, np.int32))
            lens.append(n)
        z = np.zeros(0, np.int32)
        return cls(ids, sources, list(vocab), np.concatenate(codes or [z]).astype(np.int32),
                   np.concatenate(lens or [z]).astype(np.int32), chunks)

    def __len__(self) -> int:
        return len(self.ids)


def _float_mode() -> np.dtype:
    # bm25s computes k1*(1-b+b*len/avg) as a numpy float64 scalar and adds the float32
    # term frequencies to it; numpy 2 keeps that in float64, numpy 1 in float32. Match it
    # so that the scores are bit-identical to bm25s' own index.
    return (np.float64(1.0) + np.ones(1, dtype=np.float32)).dtype


_MODE = _float_mode()


def posting_scores(tf: np.ndarray, doc_len: np.ndarray, df: int, n_docs: int, avg: np.float64) -> np.ndarray:
    """bm25s' score of each posting of one token (term counts `tf` in documents of lengths
    `doc_len`), with bm25s' own formulas and dtypes, so that the float32 results are the
    values bm25s stores in its index, bit for bit."""
    # idf as bm25s does it: math.log in double per token, stored as float32
    idf = np.float32(math.log(1 + (n_docs - df + 0.5) / (df + 0.5)))
    denom = (K1 * ((1 - B) + B * doc_len.astype(np.float64) / avg)).astype(_MODE)
    t = tf.astype(np.float32).astype(_MODE)
    out = t / (denom + t)
    out *= np.asarray(idf).astype(_MODE)
    return out.astype(np.float32)


def _mean_len(total: int, n: int) -> np.float64:
    # what numpy's mean of the int64 lengths gives (the sum is exact in float64 at any real size)
    return np.float64(total) / n


class KeywordIndex:
    """BM25 over chunk tokens. `scores(query_tokens)` gives one score per document position
    (base documents, then delta documents; a deleted position scores 0); `chunk_id(i)` and
    `doc_index(chunk_id)` map between positions and chunk ids."""

    def __init__(self, path: Path | None, base: dict, sources: list[str], deleted: np.ndarray | None = None,
                 delta: dict | None = None):
        self.path = path
        self._b = base  # ids, src, doc_len, indptr, indices, tf, ids_sorted, ids_order, path (lazy vocab)
        self.sources = sources
        self.n_base = len(base["ids"])
        self.deleted = deleted if deleted is not None else np.zeros(0, dtype=np.int32)  # base positions
        self._alive = None
        if len(self.deleted):
            self._alive = np.ones(self.n_base, dtype=bool)
            self._alive[self.deleted] = False
        d = delta or _empty_delta()
        self._d = d
        self.n_delta = len(d["ids"])
        self._d_pos = {i.decode(): self.n_base + j for j, i in enumerate(d["ids"].tolist())}
        self._new_vocab = {t: self.n_vocab_base + j for j, t in enumerate(d["new_vocab"])}
        self._vocab_sorted = self._vocab_ids = None
        self._lock = threading.Lock()
        doc_len = np.asarray(base["doc_len"], dtype=np.int64)
        total = int(doc_len.sum()) - (int(doc_len[self.deleted].sum()) if len(self.deleted) else 0)
        self.total_len = total + int(np.asarray(d["doc_len"], dtype=np.int64).sum())
        self.n_docs = self.n_base - len(self.deleted) + self.n_delta

    @property
    def n_vocab_base(self) -> int:
        return len(self._b["indptr"]) - 1 if len(self._b["indptr"]) else 0

    @property
    def base_name(self) -> str | None:
        bp = self._b.get("path")
        return bp.name if bp is not None else None

    # ---- vocabulary ------------------------------------------------------
    def _base_vocab(self):
        if self._vocab_sorted is None:
            bp = self._b.get("path")
            if bp is None or not self.n_base:
                self._vocab_sorted, self._vocab_ids = np.zeros(0, dtype="S1"), np.zeros(0, dtype=np.int32)
            else:
                self._vocab_sorted = np.load(bp / "vocab_tokens.npy", mmap_mode="r")
                self._vocab_ids = np.load(bp / "vocab_ids.npy", mmap_mode="r")
        return self._vocab_sorted, self._vocab_ids

    def _lookup(self, tokens: list[str]) -> list[int | None]:
        """Vocabulary id of each token (None when not in the index)."""
        if not tokens:
            return []
        vs, vi = self._base_vocab()
        out: list[int | None] = [None] * len(tokens)
        if len(vs):
            keys = np.array([t.encode() for t in tokens], dtype=vs.dtype)
            pos = np.minimum(np.searchsorted(vs, keys), len(vs) - 1)
            # a token longer than the widest stored one is truncated by the dtype: not a match
            fits = np.array([len(t.encode()) for t in tokens]) <= keys.itemsize
            found = (np.asarray(vs[pos]) == keys) & fits
            vals = np.asarray(vi[pos])
            for n in np.flatnonzero(found).tolist():
                out[n] = int(vals[n])
        for n, t in enumerate(tokens):
            if out[n] is None:
                out[n] = self._new_vocab.get(t)
        return out

    def token_ids(self, tokens: list[str]) -> list[int]:
        """Vocabulary ids of the tokens that are in it, in order (duplicates kept, as bm25s does)."""
        return [i for i in self._lookup(tokens) if i is not None]

    @property
    def vocab(self) -> dict[str, int]:
        """The whole vocabulary as a dict (the terms the documents use)."""
        vs, vi = self._base_vocab()
        out = {t.decode(): int(i) for t, i in zip(np.asarray(vs).tolist(), np.asarray(vi).tolist())}
        out.update(self._new_vocab)
        return out

    # ---- reading ---------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "KeywordIndex":
        """Memory-map a saved index (tokenises nothing, reads no chunk text)."""
        meta = _meta(path)
        if meta.get("kind", "base") == "delta":
            base_path = path.parent / meta["base"]
            base_meta = _meta(base_path)
            base = _open_base(base_path, base_meta)
            load = lambda name: np.load(path / name)  # noqa: E731  small: read whole
            delta = {"ids": load("ids.npy"), "src": load("src.npy"), "doc_len": load("doc_len.npy"),
                     "tok": load("tok.npy"), "doc": load("doc.npy"), "tf": load("tf.npy"),
                     "sources": meta["sources"], "new_vocab": meta["new_vocab"], "texts": None}
            if meta.get("texts"):
                delta["texts"] = _unpack_all(path)
            return cls(path, base, base_meta["sources"], load("deleted.npy"), delta)
        return cls(path, _open_base(path, meta), meta["sources"])

    def __len__(self) -> int:
        return self.n_docs

    @property
    def n_positions(self) -> int:
        return self.n_base + self.n_delta

    def _postings(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, term counts and document lengths of the live documents holding token t."""
        b = self._b
        parts_i, parts_tf, parts_len = [], [], []
        if t < self.n_vocab_base and self.n_base:
            lo, hi = int(b["indptr"][t]), int(b["indptr"][t + 1])
            idx = np.asarray(b["indices"][lo:hi])
            tf = np.asarray(b["tf"][lo:hi])
            if self._alive is not None:
                keep = self._alive[idx]
                idx, tf = idx[keep], tf[keep]
            parts_i.append(idx)
            parts_tf.append(tf)
            parts_len.append(np.asarray(b["doc_len"])[idx])
        d = self._d
        if self.n_delta:
            lo, hi = np.searchsorted(d["tok"], [t, t + 1]).tolist()
            if hi > lo:
                doc = d["doc"][lo:hi]
                parts_i.append(doc + self.n_base)
                parts_tf.append(d["tf"][lo:hi])
                parts_len.append(d["doc_len"][doc])
        if not parts_i:
            z = np.zeros(0, dtype=np.int32)
            return z, z, z
        if len(parts_i) == 1:
            return parts_i[0], parts_tf[0], parts_len[0]
        return np.concatenate(parts_i), np.concatenate(parts_tf), np.concatenate(parts_len)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """One float32 score per position: bm25s' scores (k1=1.2, b=0.75, lucene idf) over the
        live documents, summed token by token in query order as bm25s sums them."""
        out = np.zeros(self.n_positions, dtype=np.float32)
        ids = self.token_ids(query_tokens)
        if not ids or not self.n_docs:
            return out
        avg = _mean_len(self.total_len, self.n_docs)
        cache: dict[int, tuple] = {}
        for t in ids:
            if t not in cache:
                idx, tf, dl = self._postings(t)
                cache[t] = (idx, posting_scores(tf, dl, len(idx), self.n_docs, avg))
            idx, vals = cache[t]
            out[idx] += vals
        return out

    def top(self, scores: np.ndarray, n: int) -> list[int]:
        """Positions of the n best positive scores, best first (ties by position)."""
        pos = np.flatnonzero(scores > 0)
        if len(pos) > n:
            part = np.argpartition(-scores[pos], n - 1)[:n]
            # keep every document tied with the n-th score, then cut after sorting
            cut = scores[pos[part]].min()
            pos = pos[scores[pos] >= cut]
        order = np.lexsort((pos, -scores[pos]))
        return [int(i) for i in pos[order][:n]]

    def chunk_id(self, i: int) -> str:
        if i < self.n_base:
            return self._b["ids"][i].decode()
        return self._d["ids"][i - self.n_base].decode()

    def chunk(self, i: int):
        """The stored chunk (rag.types.Chunk) at position i, or None when this segment has
        no stored texts (an index written before they were stored): read it from Chroma."""
        from rag.types import Chunk

        if i < self.n_base:
            t = self._b.get("texts")
            if t is None:
                return None
            off, blob, hoff, hblob, pos = t
            text = bytes(blob[off[i] : off[i + 1]]).decode()
            head = bytes(hblob[hoff[i] : hoff[i + 1]]).decode()
            start, end, ordinal = (int(x) for x in pos[i])
            return Chunk(self.chunk_id(i), self.sources[int(self._b["src"][i])], text, start, end, head, ordinal)
        j = i - self.n_base
        t = self._d["texts"]
        if t is None:
            return None
        texts, heads, pos = t
        start, end, ordinal = (int(x) for x in pos[j])
        return Chunk(self.chunk_id(i), self._d["sources"][int(self._d["src"][j])], texts[j], start, end, heads[j],
                     ordinal)

    def chunk_ids(self) -> list[str]:
        """The ids of the live documents, in position order."""
        base = [i.decode() for i in np.asarray(self._b["ids"]).tolist()]
        if self._alive is not None:
            base = [c for c, a in zip(base, self._alive.tolist()) if a]
        return base + [i.decode() for i in self._d["ids"].tolist()]

    def _base_index(self, key: bytes) -> int | None:
        b = self._b
        if not self.n_base:
            return None
        j = int(np.searchsorted(b["ids_sorted"], key))
        if j < self.n_base and b["ids_sorted"][j] == key:
            return int(b["ids_order"][j])
        return None

    def doc_index(self, chunk_id: str) -> int | None:
        j = self._d_pos.get(chunk_id)
        if j is not None:
            return j
        j = self._base_index(chunk_id.encode())
        if j is None or (self._alive is not None and not self._alive[j]):
            return None
        return j

    def __contains__(self, chunk_id: str) -> bool:
        return self.doc_index(chunk_id) is not None

    def doc_freq(self, term: str) -> int:
        """How many chunks contain the term (the extractive answerer weighs terms by it)."""
        ids = self.token_ids([term])
        return len(self._postings(ids[0])[0]) if ids else 0

    def positions(self, term: str) -> np.ndarray:
        """Positions of the live chunks that contain the term (the English bridge reads which
        terms occur together, rag.crossling.CorpusVocab)."""
        ids = self.token_ids([term])
        return self._postings(ids[0])[0] if ids else np.zeros(0, dtype=np.int32)

    def texts(self, positions: list[int]) -> list[str | None]:
        """Heading and text of the chunks at these positions (None where this segment
        stores no texts: an index written before they were stored)."""
        out = []
        for i in positions:
            c = self.chunk(i)
            out.append(None if c is None else f"{c.heading} {c.text}")
        return out

    def _rows(self):
        """(source name, chunk id) of every live document, base then delta."""
        b, d = self._b, self._d
        ids, src = np.asarray(b["ids"]), np.asarray(b["src"])
        if self._alive is not None:
            ids, src = ids[self._alive], src[self._alive]
        for i, s in zip(ids.tolist(), src.tolist()):
            yield self.sources[s], i
        for i, s in zip(d["ids"].tolist(), d["src"].tolist()):
            yield d["sources"][s], i

    def ids_by_source(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for s, i in self._rows():
            out.setdefault(s, set()).add(i.decode())
        return out

    def ids_of(self, sources: Iterable[str]) -> dict[str, set[str]]:
        sources = set(sources)
        out: dict[str, set[str]] = {}
        for names, ids, src, alive in ((self.sources, self._b["ids"], self._b["src"], self._alive),
                                       (self._d["sources"], self._d["ids"], self._d["src"], None)):
            wanted = {k: s for k, s in enumerate(names) if s in sources}
            for s in wanted.values():
                out.setdefault(s, set())
            if not wanted:
                continue
            rows = np.isin(np.asarray(src), np.array(list(wanted), dtype=np.int32))
            if alive is not None:
                rows &= alive
            for r in np.flatnonzero(rows).tolist():
                out[wanted[int(src[r])]].add(ids[r].decode())
        return out

    def source_counts(self) -> dict[str, int]:
        counts: Counter = Counter()
        src = np.asarray(self._b["src"])
        if self._alive is not None:
            src = src[self._alive]
        for s, c in zip(self.sources, np.bincount(src, minlength=len(self.sources)).tolist()):
            if c:
                counts[s] += c
        d = self._d
        for s, c in zip(d["sources"], np.bincount(d["src"], minlength=len(d["sources"])).tolist()):
            if c:
                counts[s] += c
        return dict(counts)

    # ---- writing ---------------------------------------------------------
    def updated(self, folder: Path, remove_sources: Iterable[str],
                add: Sequence[NewDoc] | EncodedDocs) -> "KeywordIndex":
        """A new index in `folder`: this one without the chunks of `remove_sources`, plus `add`
        (which may re-add chunks of a removed source). This index is left untouched.

        Usually only a delta is written (the new documents since the base and the deleted
        base positions), its folder naming the base; when the delta and the deleted documents
        outgrow MERGE_FRACTION of the base, everything is merged into a new base."""
        enc = add if isinstance(add, EncodedDocs) else EncodedDocs.from_docs(add)
        remove = set(remove_sources)
        add_keys = {i.encode() for i in enc.ids}
        # deleted base positions
        dead = np.zeros(self.n_base, dtype=bool)
        if len(self.deleted):
            dead[self.deleted] = True
        if remove and self.n_base:
            codes = [k for k, s in enumerate(self.sources) if s in remove]
            if codes:
                dead |= np.isin(np.asarray(self._b["src"]), np.array(codes, dtype=np.int32))
        for key in add_keys:
            j = self._base_index(key)
            if j is not None:
                dead[j] = True
        # delta documents kept
        d = self._d
        keep_d = np.ones(self.n_delta, dtype=bool)
        if self.n_delta:
            codes = [k for k, s in enumerate(d["sources"]) if s in remove]
            if codes:
                keep_d &= ~np.isin(d["src"], np.array(codes, dtype=np.int32))
            if add_keys:
                keep_d &= ~np.isin(d["ids"], np.array(sorted(add_keys)))
        # the new documents as postings sorted by (token, document); new tokens get new ids
        new_vocab = list(d["new_vocab"])
        gid = self._lookup(enc.vocab)
        for j, t in enumerate(enc.vocab):
            if gid[j] is None:
                gid[j] = self.n_vocab_base + len(new_vocab)
                new_vocab.append(t)
        n_add, n_kept_d = len(enc), int(keep_d.sum())
        if n_add and len(enc.codes):
            key = np.asarray(gid, dtype=np.int64)[enc.codes] * n_add + np.repeat(np.arange(n_add, dtype=np.int64), enc.lens)
            key, cnt = np.unique(key, return_counts=True)  # sorted: by token, then document
            a_tok, a_doc, a_tf = key // n_add, key % n_add + n_kept_d, cnt
        else:
            a_tok = a_doc = a_tf = np.zeros(0, dtype=np.int64)
        # kept delta rows renumbered (a monotone map keeps their order)
        rows = keep_d[d["doc"]] if self.n_delta else np.zeros(0, dtype=bool)
        remap = np.cumsum(keep_d, dtype=np.int64) - 1
        tok = np.concatenate([d["tok"][rows], a_tok]).astype(np.int32)
        doc = np.concatenate([remap[d["doc"][rows]] if self.n_delta else np.zeros(0, np.int64), a_doc]).astype(np.int32)
        tf = np.concatenate([d["tf"][rows], a_tf]).astype(np.int32)
        if n_kept_d:
            order = np.lexsort((doc, tok))
            tok, doc, tf = tok[order], doc[order], tf[order]
        src_names: list[str] = []
        code: dict[str, int] = {}
        d_src_names = [d["sources"][s] for s in d["src"][keep_d].tolist()] + list(enc.sources)
        for s in d_src_names:
            if s not in code:
                code[s] = len(src_names)
                src_names.append(s)
        ids = [i for i in d["ids"][keep_d].tolist()] + [i.encode() for i in enc.ids]
        old_t = d["texts"]
        texts = None
        if (old_t is not None or not n_kept_d) and (enc.chunks is not None or not n_add):
            kept = np.flatnonzero(keep_d).tolist()
            texts = ([old_t[0][j] for j in kept] + [c.text for c in enc.chunks or []],
                     [old_t[1][j] for j in kept] + [c.heading for c in enc.chunks or []],
                     np.concatenate([old_t[2][keep_d] if old_t is not None else np.zeros((0, 3), np.int32),
                                     np.array([(c.start, c.end, c.ordinal) for c in enc.chunks or []],
                                              dtype=np.int32).reshape(-1, 3)]).astype(np.int32))
        delta = {"texts": texts, "ids": np.array(ids, dtype=f"S{max([len(i) for i in ids] + [1])}"),
                 "src": np.array([code[s] for s in d_src_names], dtype=np.int32),
                 "doc_len": np.concatenate([d["doc_len"][keep_d], enc.lens]).astype(np.int32),
                 "tok": tok, "doc": doc, "tf": tf, "sources": src_names, "new_vocab": new_vocab}
        n_dead = int(dead.sum())
        if self.n_base and len(ids) + n_dead <= MERGE_FRACTION * self.n_base:
            return _write_delta(folder, self, np.flatnonzero(dead).astype(np.int32), delta)
        return self._merged(folder, ~dead, delta)

    def _merged(self, folder: Path, keep: np.ndarray, delta: dict) -> "KeywordIndex":
        """A new base: the kept base documents, then the delta's, in that order."""
        b = self._b
        n_vocab = self.n_vocab_base + len(delta["new_vocab"])
        if self.n_base:
            indptr = np.asarray(b["indptr"]).astype(np.int64)
            indices = np.asarray(b["indices"])
            tf = np.asarray(b["tf"])
            doc_len = np.asarray(b["doc_len"])
        else:
            indptr = np.zeros(self.n_vocab_base + 1, dtype=np.int64)
            indices = tf = doc_len = np.zeros(0, dtype=np.int32)
        n_vocab_old = len(indptr) - 1
        # drop deleted documents and renumber the rest (a monotone map keeps columns sorted)
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
        if n_vocab > n_vocab_old:
            indptr = np.concatenate([indptr, np.full(n_vocab - n_vocab_old, indptr[-1], dtype=np.int64)])
        if len(delta["tok"]):
            nt = delta["tok"].astype(np.int64)
            # each delta posting goes at the end of its token's column (its document is newer)
            at = indptr[nt + 1]
            indices = np.insert(indices, at, delta["doc"] + n_kept)
            tf = np.insert(tf, at, delta["tf"])
            indptr = indptr.copy()
            indptr[1:] += np.cumsum(np.bincount(nt, minlength=n_vocab))
        base_ids = np.asarray(b["ids"])[keep].tolist()
        ids = base_ids + delta["ids"].tolist()
        width = max([len(i) for i in ids] + [1])
        src_names = list(self.sources)
        src_code = {s: k for k, s in enumerate(src_names)}
        for s in delta["sources"]:
            if s not in src_code:
                src_code[s] = len(src_names)
                src_names.append(s)
        d_codes = np.array([src_code[s] for s in delta["sources"]], dtype=np.int32)
        src = np.concatenate([np.asarray(b["src"])[keep].astype(np.int32),
                              d_codes[delta["src"]] if len(delta["src"]) else np.zeros(0, np.int32)])
        doc_len = np.concatenate([doc_len, delta["doc_len"]]).astype(np.int32)
        vocab_tokens = self._vocab_tokens_by_id() + list(delta["new_vocab"])
        texts = None
        bt = b.get("texts")
        if delta["texts"] is not None and (bt is not None or not n_kept):
            kept = np.flatnonzero(keep).tolist() if bt is not None else []
            texts = ([bytes(bt[1][bt[0][i] : bt[0][i + 1]]).decode() for i in kept] + delta["texts"][0],
                     [bytes(bt[3][bt[2][i] : bt[2][i + 1]]).decode() for i in kept] + delta["texts"][1],
                     np.concatenate([np.asarray(bt[4])[keep] if bt is not None else np.zeros((0, 3), np.int32),
                                     delta["texts"][2]]).astype(np.int32))
        return _write_base(folder, vocab_tokens, np.array(ids, dtype=f"S{width}"), src.astype(np.int32), src_names,
                           doc_len, indptr, indices.astype(np.int32), tf.astype(np.int32), texts)

    def _vocab_tokens_by_id(self) -> list[str]:
        vs, vi = self._base_vocab()
        out = [""] * self.n_vocab_base
        for t, i in zip(np.asarray(vs).tolist(), np.asarray(vi).tolist()):
            out[i] = t.decode()
        return out

    @classmethod
    def empty(cls) -> "KeywordIndex":
        z = np.zeros(0, dtype="S1")
        zi = np.zeros(0, dtype=np.int32)
        return cls(None, {"ids": z, "src": zi, "doc_len": zi, "indptr": np.zeros(1, dtype=np.int64), "indices": zi,
                          "tf": zi, "ids_sorted": z, "ids_order": zi, "path": None}, [])

    @classmethod
    def build(cls, folder: Path, docs: Sequence[NewDoc]) -> "KeywordIndex":
        return cls.empty().updated(folder, (), docs)


def _empty_delta() -> dict:
    zi = np.zeros(0, dtype=np.int32)
    return {"ids": np.zeros(0, dtype="S1"), "src": zi, "doc_len": zi, "tok": zi, "doc": zi, "tf": zi,
            "sources": [], "new_vocab": [], "texts": ([], [], np.zeros((0, 3), np.int32))}


def _save_texts(folder: Path, texts) -> None:
    """Chunk texts and headings as utf-8 blobs with offsets, and (start, end, ordinal):
    a hit's chunk is read from here (memory-mapped) instead of a second call to Chroma."""
    for name, strings in (("text", texts[0]), ("head", texts[1])):
        bs = [t.encode() for t in strings]
        off = np.zeros(len(bs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in bs], out=off[1:])
        np.save(folder / f"{name}_off.npy", off)
        np.save(folder / f"{name}s.npy", np.frombuffer(b"".join(bs), dtype=np.uint8))
    np.save(folder / "pos.npy", np.asarray(texts[2], dtype=np.int32).reshape(-1, 3))


def _load_texts(folder: Path, mmap: bool):
    def load(name):
        try:
            return np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)
        except ValueError:  # an empty array (no headings at all) cannot be memory-mapped
            return np.load(folder / f"{name}.npy")

    return tuple(load(n) for n in ("text_off", "texts", "head_off", "heads", "pos"))


def _unpack_all(folder: Path):
    off, blob, hoff, hblob, pos = _load_texts(folder, mmap=False)
    raw, hraw = blob.tobytes(), hblob.tobytes()
    return ([raw[a:b].decode() for a, b in zip(off[:-1].tolist(), off[1:].tolist())],
            [hraw[a:b].decode() for a, b in zip(hoff[:-1].tolist(), hoff[1:].tolist())], pos)


def _meta(path: Path) -> dict:
    meta = json.loads((path / _DOCS).read_text(encoding="utf-8"))
    if meta.get("format") not in _READABLE:
        raise ValueError(f"keyword index format {meta.get('format')} in {path}")
    return meta


def _open_base(path: Path, meta: dict) -> dict:
    load = lambda name: np.load(path / name, mmap_mode="r")  # noqa: E731
    post = path / "bm25" if meta["format"] == 3 else path
    names = ("indptr.csc.index.npy", "indices.csc.index.npy") if meta["format"] == 3 else ("indptr.npy", "indices.npy")
    base = {k: load(f"{k}.npy") for k in ("ids", "src", "doc_len", "tf", "ids_sorted", "ids_order")}
    base["indptr"] = np.load(post / names[0], mmap_mode="r") if meta["n_docs"] else np.zeros(1, dtype=np.int64)
    base["indices"] = np.load(post / names[1], mmap_mode="r") if meta["n_docs"] else np.zeros(0, dtype=np.int32)
    # small and read on every update and at open: in memory
    base["doc_len"] = np.asarray(base["doc_len"])
    base["path"] = path
    base["texts"] = _load_texts(path, mmap=True) if meta.get("texts") else None
    return base


def _write_base(folder: Path, vocab_tokens: list[str], ids, src, sources, doc_len, indptr, indices,
                tf, texts=None) -> KeywordIndex:
    """Write a complete base segment into a fresh folder (it becomes live only when the
    manifest names it)."""
    folder.mkdir(parents=True, exist_ok=False)
    # drop sources that no longer have chunks, so the list does not grow forever
    used = np.unique(src) if len(src) else np.zeros(0, dtype=np.int32)
    remap = np.full(len(sources) + 1, -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    src = remap[src] if len(src) else src
    sources = [sources[i] for i in used.tolist()]
    n_docs = len(ids)
    if n_docs:
        toks = np.array([t.encode() for t in vocab_tokens], dtype=bytes)
        vorder = np.argsort(toks, kind="stable")
        np.save(folder / "vocab_tokens.npy", toks[vorder])
        np.save(folder / "vocab_ids.npy", vorder.astype(np.int32))
        np.save(folder / "indptr.npy", indptr.astype(np.int64))
        np.save(folder / "indices.npy", indices.astype(np.int32))
    order = np.argsort(ids, kind="stable").astype(np.int32)
    for name, arr in (("ids.npy", ids), ("src.npy", src.astype(np.int32)), ("tf.npy", tf.astype(np.int32)),
                      ("doc_len.npy", doc_len.astype(np.int32)), ("ids_sorted.npy", ids[order]),
                      ("ids_order.npy", order)):
        np.save(folder / name, arr)
    if texts is not None:
        _save_texts(folder, texts)
    (folder / _DOCS).write_text(json.dumps({"format": FORMAT, "kind": "base", "n_docs": n_docs, "sources": sources,
                                            "texts": texts is not None}, ensure_ascii=False), encoding="utf-8")
    _fsync_tree(folder)
    return KeywordIndex.open(folder)


def _write_delta(folder: Path, index: KeywordIndex, deleted: np.ndarray, delta: dict) -> KeywordIndex:
    """Write a delta folder naming the base of `index` (the base folder is not touched)."""
    folder.mkdir(parents=True, exist_ok=False)
    for name in ("ids", "src", "doc_len", "tok", "doc", "tf"):
        np.save(folder / f"{name}.npy", delta[name])
    np.save(folder / "deleted.npy", deleted)
    if delta["texts"] is not None:
        _save_texts(folder, delta["texts"])
    meta = {"format": FORMAT, "kind": "delta", "base": index.base_name, "n_docs": len(delta["ids"]),
            "sources": delta["sources"], "new_vocab": delta["new_vocab"], "texts": delta["texts"] is not None}
    (folder / _DOCS).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
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
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_folder(build_dir: Path) -> Path:
    return build_dir / f"keyword-{uuid.uuid4().hex[:12]}"


def drop_old(build_dir: Path, keep: set[str]) -> None:
    """Remove keyword folders other than `keep` (the live one and the previous one:
    a reader may have just read the old manifest) and the base folders they name."""
    keep = {k for k in keep if k}
    for name in list(keep):
        try:
            meta = json.loads((build_dir / name / _DOCS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("base"):
            keep.add(meta["base"])
    for d in build_dir.glob("keyword-*"):
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
