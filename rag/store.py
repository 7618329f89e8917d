"""Persistent Chroma storage of chunks and their vectors, crash-safe.

index/CURRENT names the live build folder; `--rebuild` fills a new folder and
switches CURRENT atomically only when it is complete, so a crash (kill -9)
mid-rebuild leaves the previous index answering. Vectors always come from our
own embedder: Chroma's default embedding function (which downloads a model)
is never used, and telemetry is off.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np

from rag.priority import checkpoint
from rag.types import Chunk, UserError

log = logging.getLogger(__name__)

COLLECTION = "chunks"
# Chroma's HNSW search breadth (its default is 100). The searcher asks for 100 dense
# candidates and min-max normalises their cosines, so the 100th one matters. With a search
# breadth equal to the number of results, the tail of that list is approximate and changes
# from one process to the next (the chunks not yet flushed to the persisted graph are
# inserted again, on several threads, each time the collection is opened): the same
# question on the same index got another answer after a restart. At four times the results,
# two runs over the eval collections give the same answers; on bench/hnsw_search_ef.py's fake
# vectors (a worst case) recall of the 100 rises 0.43 -> 0.74 at 10k chunks, but two processes
# still return the same 100 for only 65 % of questions: wider, not exact.
SEARCH_EF = 400
_CURRENT = "CURRENT"


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Chroma keeps its embedded clients in a class-level dict, registered before they are
# started and without a lock: two threads opening the same folder at once (two requests
# after a reload) got a half-started client ("'RustBindingsAPI' object has no attribute
# 'bindings'", or a KeyError when forget_open_clients ran meanwhile). Opening and
# forgetting clients take this lock.
_CLIENTS_LOCK = threading.RLock()


def _client(path: Path, url: str = ""):
    """The embedded client on the build folder, or an HTTP client when a Chroma server URL is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if not url:
        with _CLIENTS_LOCK:
            return chromadb.PersistentClient(path=str(_writable(path)), settings=settings)
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UserError(f"RAG_CHROMA_URL must look like http://HOST:PORT, not {url!r}")
    try:
        client = chromadb.HttpClient(host=u.hostname, port=u.port or (443 if u.scheme == "https" else 8000),
                                     ssl=u.scheme == "https", settings=settings)
        client.heartbeat()
    except Exception as exc:
        raise UserError(f"cannot reach the Chroma server at {url}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return client


def _writable(path: Path) -> Path:
    """Chroma writes to its folder even to read (SQLite journal, migrations),
    so a read-only index (a read-only mount, another user's files) is
    searched through a private copy in a temporary folder."""
    if not path.exists() or all(os.access(f, os.W_OK) for f in [path, *path.rglob("*")]):
        return path
    copy = Path(tempfile.mkdtemp(prefix="rag-readonly-index-")) / "chroma"
    shutil.copytree(path, copy)
    for f in [copy, *copy.rglob("*")]:
        f.chmod(0o700 if f.is_dir() else 0o600)
    atexit.register(shutil.rmtree, copy.parent, ignore_errors=True)
    log.warning("index %s is read-only: searching a copy in %s", path, copy)
    return copy


def forget_open_clients() -> None:
    """Chroma caches one client per folder for the life of the process, with
    its vectors in memory (and does not see another process's writes to that
    folder); after a switch to a new build the replaced ones would stay
    cached. Stores already open keep working; later opens read afresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    with _CLIENTS_LOCK:
        SharedSystemClient.clear_system_cache()


def collection_name(build_dir: Path, url: str) -> str:
    """One collection per build on a server (the build folder's name is unique);
    the embedded client has one folder per build, so one fixed name."""
    return f"rag-{build_dir.name}" if url else COLLECTION


def _chunk_from(id_: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        id=id_,
        source=str(meta.get("source", "")),
        text=text,
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        heading=str(meta.get("heading", "")),
        ordinal=int(meta.get("ordinal", 0)),
    )


@dataclass
class FileRecord:
    """What the index knows about one indexed file: enough to skip it unread when
    its size and mtime are unchanged, and its hash when they are not."""

    sha256: str
    size: int = -1
    mtime_ns: int = -1

    @classmethod
    def from_json(cls, value) -> "FileRecord":
        # older manifests stored the hash alone: the file is read once, then recorded fully
        return cls(value) if isinstance(value, str) else cls(**value)


@dataclass
class Manifest:
    embed_model: str
    dim: int
    chunk_max_chars: int
    files: dict[str, Any]  # source -> FileRecord fields (or, in older indexes, the sha256)
    created: float
    updated: float
    keyword: str = ""  # folder of the live keyword index inside the build ("" = none yet)
    collection: str = COLLECTION  # the Chroma collection of this build
    chunks: int = -1  # chunks in the build when the manifest was written
    text_version: int = 1  # rag.chunking.TEXT_VERSION the chunks were made with (1: before it was recorded)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, indent=1)

    def records(self) -> dict[str, FileRecord]:
        return {k: FileRecord.from_json(v) for k, v in self.files.items()}


class ChunkStore:
    """One build of the index: a Chroma collection plus its manifest and keyword index.

    The Chroma client is opened on first use, so work that needs only the manifest
    (a no-op `rag index`) never starts it. Every read of many rows is paged
    (`page_size` rows per call): SQLite limits the variables of one query.
    """

    def __init__(self, build_dir: Path, manifest: Manifest, *, chroma_url: str = "", page_size: int = 5000):
        self.build_dir = build_dir
        self.manifest = manifest
        self.chroma_url = chroma_url
        self.page_size = max(1, int(page_size))
        self._client = None
        self._collection = None

    @property
    def client(self):
        if self._client is None:
            with _CLIENTS_LOCK:
                if self._client is None:
                    self._client = _client(self.build_dir / "chroma", self.chroma_url)
        return self._client

    @property
    def collection(self):
        if self._collection is None:
            with _CLIENTS_LOCK:
                if self._collection is None:
                    meta = {"hnsw:space": "cosine", "embed_model": self.manifest.embed_model, "dim": self.manifest.dim}
                    collection = self.client.get_or_create_collection(
                        self.manifest.collection, metadata=meta, embedding_function=None
                    )
                    _widen_search(collection)
                    self._collection = collection
        return self._collection

    # ---- opening -------------------------------------------------------
    @staticmethod
    def current_build(index_dir: Path) -> Path | None:
        pointer = index_dir / _CURRENT
        if not pointer.is_file():
            return None
        name = pointer.read_text(encoding="utf-8").strip()
        build = index_dir / name
        return build if name and (build / "manifest.json").is_file() else None

    @staticmethod
    def read_manifest(build: Path) -> Manifest:
        data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        return Manifest(**data)

    @classmethod
    def open(cls, index_dir: Path, embed_model: str | None = None, *, chroma_url: str = "",
             page_size: int = 5000) -> "ChunkStore":
        """Open the live build; UserError when there is none, the model differs, or the
        build lives in the other kind of Chroma (embedded vs server)."""
        build = cls.current_build(index_dir)
        if build is None:
            raise UserError(f"no index in {index_dir}/ yet: run `rag index` first")
        manifest = cls.read_manifest(build)
        if embed_model is not None and manifest.embed_model != embed_model:
            raise UserError(
                f"the index was built with embedding model {manifest.embed_model!r} but "
                f"{embed_model!r} is configured: run `rag index --rebuild` (or set RAG_EMBED_MODEL back)"
            )
        on_server = manifest.collection != COLLECTION
        if on_server != bool(chroma_url):
            where = "a Chroma server" if on_server else "the embedded Chroma"
            raise UserError(
                f"the index in {index_dir}/ was built in {where}; "
                + ("set RAG_CHROMA_URL to that server" if on_server else "unset RAG_CHROMA_URL")
                + " or run `rag index --rebuild`"
            )
        return cls(build, manifest, chroma_url=chroma_url, page_size=page_size)

    @classmethod
    def create(cls, index_dir: Path, embed_model: str, dim: int, chunk_max_chars: int, *,
               chroma_url: str = "", page_size: int = 5000) -> "ChunkStore":
        """A new, not yet live build folder (and, on a server, its own collection)."""
        index_dir.mkdir(parents=True, exist_ok=True)
        name = time.strftime("build-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        build = index_dir / name
        build.mkdir()
        now = time.time()
        from rag.chunking import TEXT_VERSION

        manifest = Manifest(embed_model, dim, chunk_max_chars, {}, now, now,
                            collection=collection_name(build, chroma_url), text_version=TEXT_VERSION)
        return cls(build, manifest, chroma_url=chroma_url, page_size=page_size)

    def keyword_index(self):
        """The live keyword index of this build, memory-mapped; None for a build made
        before keyword indexes were stored (`rag index` adds one)."""
        from rag.keyword_index import KeywordIndex

        if not self.manifest.keyword:
            return None
        try:
            return KeywordIndex.open(self.build_dir / self.manifest.keyword)
        except (OSError, ValueError) as exc:  # another format version, or damaged: rebuilt by `rag index`
            log.warning("keyword index not usable (%s): it is rebuilt at the next `rag index`", exc)
            return None

    # ---- writing -------------------------------------------------------
    def max_batch(self) -> int:
        try:
            return max(1, min(self.page_size, int(self.client.get_max_batch_size())))
        except Exception:  # older servers do not say; the page size is a safe bound
            return self.page_size

    def upsert(self, chunks: list[Chunk], vectors: np.ndarray, file_sha: dict[str, str]) -> None:
        if not chunks:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        step = self.max_batch()
        for i in range(0, len(chunks), step):
            part = chunks[i : i + step]
            self.collection.upsert(
                ids=[c.id for c in part],
                embeddings=vectors[i : i + step],
                documents=[c.text for c in part],
                metadatas=[_meta(c, file_sha.get(c.source, "")) for c in part],
            )
            checkpoint()

    def update_metadata(self, chunks: list[Chunk], file_sha: dict[str, str]) -> None:
        """New offsets/ordinal/heading for chunks whose text (and id) did not change."""
        step = self.max_batch()
        for i in range(0, len(chunks), step):
            part = chunks[i : i + step]
            self.collection.update(ids=[c.id for c in part],
                                   metadatas=[_meta(c, file_sha.get(c.source, "")) for c in part])
            checkpoint()

    def delete(self, ids: list[str]) -> None:
        step = min(500, self.page_size)
        for i in range(0, len(ids), step):
            self.collection.delete(ids=ids[i : i + step])
            checkpoint()

    def save_manifest(self, files: dict[str, Any], keyword: str | None = None, chunks: int | None = None) -> None:
        """Write the manifest atomically: this is the commit point of an index run."""
        self.manifest.files = dict(sorted(files.items()))
        if keyword is not None:
            self.manifest.keyword = keyword
        if chunks is not None:
            self.manifest.chunks = chunks
        self.manifest.updated = time.time()
        _atomic_write(self.build_dir / "manifest.json", self.manifest.to_json())

    def make_current(self) -> None:
        """Atomically make this build the live one, then drop stale builds
        (the previous live build is kept, for a reader that still has it open)."""
        index_dir = self.build_dir.parent
        previous = self.current_build(index_dir)
        _atomic_write(index_dir / _CURRENT, self.build_dir.name + "\n")
        keep = {self.build_dir.name, previous.name if previous else ""}
        for d in index_dir.glob("build-*"):
            if d.is_dir() and d.name not in keep:
                self.drop_build(d)

    def drop_build(self, build: Path) -> None:
        """Remove a build folder and, on a server, its collection."""
        if self.chroma_url:
            try:
                self.client.delete_collection(collection_name(build, self.chroma_url))
            except Exception:  # never created (killed before its first batch) or already gone
                pass
        shutil.rmtree(build, ignore_errors=True)

    # ---- reading -------------------------------------------------------
    def pages(self, include: list[str], where: dict | None = None) -> Iterator[dict]:
        """All rows, `page_size` per call (never one call for the whole collection)."""
        offset = 0
        while True:
            got = self.collection.get(include=include, where=where, limit=self.page_size, offset=offset)
            if not got["ids"]:
                return
            yield got
            offset += len(got["ids"])
            if len(got["ids"]) < self.page_size:
                return

    def ids_by_source(self, where: dict | None = None) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for got in self.pages(["metadatas"], where):
            for id_, meta in zip(got["ids"], got["metadatas"] or []):
                out.setdefault(str((meta or {}).get("source", "")), set()).add(id_)
        return out

    def iter_chunks(self) -> Iterator[Chunk]:
        for got in self.pages(["documents", "metadatas"]):
            for i, d, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or []):
                yield _chunk_from(i, d or "", m or {})

    def all_chunks(self) -> list[Chunk]:
        """Every chunk, in document order (paged; for tools and small indexes)."""
        chunks = list(self.iter_chunks())
        chunks.sort(key=lambda c: (c.source, c.ordinal))
        return chunks

    def get(self, ids: list[str]) -> dict[str, Chunk]:
        """Chunks by id (missing ids are left out)."""
        out: dict[str, Chunk] = {}
        for i in range(0, len(ids), self.page_size):
            got = self.collection.get(ids=ids[i : i + self.page_size], include=["documents", "metadatas"])
            for id_, d, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or []):
                out[id_] = _chunk_from(id_, d or "", m or {})
        return out

    def count(self) -> int:
        return self.collection.count()

    def query(self, vector: np.ndarray, n: int) -> list[tuple[Chunk, float]]:
        """Nearest chunks by cosine similarity (1 - cosine distance)."""
        total = self.count()
        if total == 0:
            return []
        res = self.collection.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=min(n, total),
            include=["documents", "metadatas", "distances"],
        )
        return [
            (_chunk_from(i, d or "", m or {}), 1.0 - float(dist))
            for i, d, m, dist in zip(
                res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0]
            )
        ]

    def query_ids(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest chunk ids and cosine similarities, without their texts (the searcher
        fetches texts for the few hits it keeps: reading 100 documents per query cost
        more than the vector search itself)."""
        res = self.collection.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1), n_results=n, include=["distances"]
        )
        return [(i, 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0])]

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The stored (L2-normalised) vectors of a few chunk ids."""
        if not ids:
            return {}
        res = self.collection.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(res["ids"], res["embeddings"])}

    def vector_store(self):
        """The same collection as a LlamaIndex vector store, for people who
        want to plug it into their own LlamaIndex pipelines."""
        from llama_index.vector_stores.chroma import ChromaVectorStore

        return ChromaVectorStore(chroma_collection=self.collection)


def _widen_search(collection) -> None:
    """Raise the collection's HNSW search breadth to SEARCH_EF (a setting Chroma lets change
    after creation; also for indexes built before it was set). The space is given as metadata
    at creation and left alone: a configuration passed there would replace it with l2. A server
    that refuses keeps its own setting, and the search works as before."""
    try:
        current = int((collection.configuration_json or {}).get("hnsw", {}).get("ef_search") or 0)
        if current < SEARCH_EF:
            collection.modify(configuration={"hnsw": {"ef_search": SEARCH_EF}})
    except Exception as exc:  # noqa: BLE001 - any client or server error: search still works
        log.warning("Chroma search breadth left at its default: %s", exc)


def _meta(c: Chunk, sha: str) -> dict[str, Any]:
    return {"source": c.source, "start": c.start, "end": c.end, "heading": c.heading,
            "ordinal": c.ordinal, "file_sha256": sha}
