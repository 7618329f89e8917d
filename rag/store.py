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
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.priority import checkpoint
from rag.types import Chunk, UserError

log = logging.getLogger(__name__)

COLLECTION = "chunks"
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


def _client(path: Path):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(
        path=str(_writable(path)), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


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

    SharedSystemClient.clear_system_cache()


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


def _new_build_dir(index_dir: Path) -> Path:
    index_dir.mkdir(parents=True, exist_ok=True)
    build = index_dir / (time.strftime("build-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
    build.mkdir()
    return build


def _metadata(c: Chunk, file_sha: dict[str, str]) -> dict[str, Any]:
    return {
        "source": c.source,
        "start": c.start,
        "end": c.end,
        "heading": c.heading,
        "ordinal": c.ordinal,
        "file_sha256": file_sha.get(c.source, ""),
    }


@dataclass
class Manifest:
    embed_model: str
    dim: int
    chunk_max_chars: int
    files: dict[str, str]  # source -> sha256 of the indexed bytes
    created: float
    updated: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, indent=1)


class ChunkStore:
    """One build of the index: a Chroma collection plus its manifest."""

    def __init__(self, build_dir: Path, manifest: Manifest):
        self.build_dir = build_dir
        self.manifest = manifest
        self._client = _client(build_dir / "chroma")
        self.collection = self._client.get_or_create_collection(
            COLLECTION,
            metadata={"hnsw:space": "cosine", "embed_model": manifest.embed_model, "dim": manifest.dim},
            embedding_function=None,
        )

    # ---- opening -------------------------------------------------------
    @staticmethod
    def current_build(index_dir: Path) -> Path | None:
        pointer = index_dir / _CURRENT
        if not pointer.is_file():
            return None
        name = pointer.read_text(encoding="utf-8").strip()
        build = index_dir / name
        return build if name and (build / "manifest.json").is_file() else None

    @classmethod
    def open(cls, index_dir: Path, embed_model: str | None = None) -> "ChunkStore":
        """Open the live build; UserError when there is none or the model differs."""
        build = cls.current_build(index_dir)
        if build is None:
            raise UserError(f"no index in {index_dir}/ yet: run `rag index` first")
        data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        manifest = Manifest(**data)
        if embed_model is not None and manifest.embed_model != embed_model:
            raise UserError(
                f"the index was built with embedding model {manifest.embed_model!r} but "
                f"{embed_model!r} is configured: run `rag index --rebuild` (or set RAG_EMBED_MODEL back)"
            )
        return cls(build, manifest)

    @classmethod
    def create(cls, index_dir: Path, embed_model: str, dim: int, chunk_max_chars: int) -> "ChunkStore":
        """A new, not yet live build folder."""
        build = _new_build_dir(index_dir)
        now = time.time()
        return cls(build, Manifest(embed_model, dim, chunk_max_chars, {}, now, now))

    def copy_as_new_build(self) -> "ChunkStore":
        """A new, not yet live build holding this build's chunks, for a run to
        change while this one keeps being searched."""
        self.settle()
        build = _new_build_dir(self.build_dir.parent)
        shutil.copytree(self.build_dir / "chroma", build / "chroma")
        return ChunkStore(build, Manifest(**{**self.manifest.__dict__, "files": dict(self.manifest.files)}))

    def is_live(self) -> bool:
        return self.current_build(self.build_dir.parent) == self.build_dir

    def settle(self) -> None:
        """Make Chroma apply its pending writes now (it otherwise does so on the
        next read, which would be a search's) so the folder is complete."""
        self.collection.get(limit=1, include=[])

    # ---- writing -------------------------------------------------------
    def upsert(self, chunks: list[Chunk], vectors: np.ndarray, file_sha: dict[str, str]) -> None:
        if not chunks:
            return
        self.collection.upsert(
            ids=[c.id for c in chunks],
            embeddings=np.asarray(vectors, dtype=np.float32),
            documents=[c.text for c in chunks],
            metadatas=[_metadata(c, file_sha) for c in chunks],
        )

    def update_metadata(self, chunks: list[Chunk], file_sha: dict[str, str]) -> None:
        """New offsets/heading/position for chunks whose text (and vector) is unchanged."""
        for i in range(0, len(chunks), 500):
            batch = chunks[i : i + 500]
            self.collection.update(ids=[c.id for c in batch], metadatas=[_metadata(c, file_sha) for c in batch])

    def delete(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            self.collection.delete(ids=ids[i : i + 500])

    def save_manifest(self, files: dict[str, str]) -> None:
        self.manifest.files = dict(sorted(files.items()))
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
                shutil.rmtree(d, ignore_errors=True)

    # ---- reading -------------------------------------------------------
    def _get_all(self, include: list[str]):
        """Every record, in pages: one get() of more than ~32,000 records
        fails in Chroma ("too many SQL variables"), e.g. after a 10 MB upload."""
        page = 5000
        for offset in range(0, self.count(), page):
            checkpoint()  # a background reload lets searches go first (rag/priority.py)
            got = self.collection.get(include=include, limit=page, offset=offset)
            yield from zip(got["ids"], *(got[k] or [] for k in include))

    def ids_by_source(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for id_, meta in self._get_all(["metadatas"]):
            out.setdefault(str((meta or {}).get("source", "")), set()).add(id_)
        return out

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        out: dict[str, Chunk] = {}
        for i in range(0, len(ids), 500):
            got = self.collection.get(ids=ids[i : i + 500], include=["documents", "metadatas"])
            for id_, d, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or []):
                out[id_] = _chunk_from(id_, d or "", m or {})
        return out

    def all_chunks(self) -> list[Chunk]:
        chunks = [_chunk_from(i, d or "", m or {}) for i, d, m in self._get_all(["documents", "metadatas"])]
        chunks.sort(key=lambda c: (c.source, c.ordinal))
        return chunks

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

    def vector_store(self):
        """The same collection as a LlamaIndex vector store, for people who
        want to plug it into their own LlamaIndex pipelines."""
        from llama_index.vector_stores.chroma import ChromaVectorStore

        return ChromaVectorStore(chroma_collection=self.collection)
