"""Incremental indexing: seeds folder -> chunks -> vectors -> Chroma.

Chunk ids are content hashes, so only chunks that are new are embedded;
chunks of changed or removed files are removed, and the unchanged chunks of a
changed file get their new offsets and heading. A run that changes anything
fills a new build (a copy of the live one, or an empty one for `rebuild`) and
switches to it atomically, so the live build is only ever read.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chromadb.errors import ChromaError

from rag.chunking import chunk_document
from rag.ingest import check_size, discover, load_document
from rag.normalize import Mojibake, clean_document
from rag.priority import checkpoint
from rag.settings import Settings
from rag.store import ChunkStore
from rag.types import Chunk, UserError


@dataclass
class IndexReport:
    files: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    seconds: float = 0.0
    total_chunks: int = 0
    rebuilt: bool = False
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # symbolic links, not followed
    saved_as: str = ""  # an upload's file name in the documents folder
    mojibake: dict[str, list[Mojibake]] = field(default_factory=dict)

    def summary(self) -> str:
        s = (
            f"{self.files} files, {self.total_chunks} chunks: {self.added} added, {self.updated} updated, "
            f"{self.removed} removed, {self.unchanged} unchanged; {self.embedded} embedded in {self.seconds:.1f} s"
        )
        if self.errors:
            s += f"; {len(self.errors)} file(s) skipped"
        if self.skipped:
            s += f"; {len(self.skipped)} symbolic link(s) not followed"
        return s

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "total_chunks": self.total_chunks,
            "seconds": round(self.seconds, 3),
            "rebuilt": self.rebuilt,
            "errors": self.errors,
            "skipped": self.skipped,
            "mojibake": {k: [str(m) for m in v] for k, v in self.mojibake.items()},
        }


class _Progress:
    """rich progress when a console is given, silent otherwise."""

    def __init__(self, console):
        self.console = console
        self.progress = None

    def __enter__(self):
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int):
        return self.progress.add_task(description, total=total) if self.progress else None

    def advance(self, task, n: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)


def load_chunks(paths: list[Path], root: Path, max_chars: int, report: IndexReport, progress: _Progress,
                max_mb: float | None = None):
    """Read and chunk every file; unreadable or oversized files are reported, not fatal."""
    chunks: dict[str, Chunk] = {}
    shas: dict[str, str] = {}
    failed: set[str] = set()
    task = progress.task("reading files", len(paths))
    for p in paths:
        checkpoint()  # searches first (rag/priority.py)
        rel = p.relative_to(root).as_posix()
        try:
            if any("\ud800" <= ch <= "\udfff" for ch in rel):
                raise UserError(f"{rel.encode('utf-8', 'replace').decode()}: file name is not valid UTF-8 text; rename it")
            if max_mb is not None:
                check_size(p.stat().st_size, rel, max_mb, "RAG_DOC_MAX_MB")
            doc = load_document(p, root)
            cleaned = clean_document(doc.text, markdown=doc.is_markdown)
            if cleaned.mojibake:
                report.mojibake[doc.source] = cleaned.mojibake
            for c in chunk_document(doc, max_chars, cleaned):
                chunks[c.id] = c
            shas[doc.source] = doc.sha256
        except UserError as exc:
            report.errors.append(str(exc))
            failed.add(rel)
        progress.advance(task)
    return chunks, shas, failed


def index_folder(settings: Settings, embedder, *, rebuild: bool = False, console=None) -> IndexReport:
    """Bring the index in settings.index_dir up to date with settings.seeds_dir."""
    t0 = time.perf_counter()
    report = IndexReport(rebuilt=rebuild)
    root = settings.seeds_dir
    paths = discover(root, report.skipped)
    report.files = len(paths)
    index_dir = settings.index_dir
    try:
        _index_into(settings, embedder, index_dir, paths, report, rebuild, console)
    except OSError as exc:
        # A full disk or a read-only folder: the live build is untouched (new
        # chunks are written batch by batch and the manifest last), so say
        # what happened instead of a traceback.
        raise UserError(f"cannot write the index in {index_dir}/: {_os_reason(exc)}") from None
    except ChromaError as exc:
        # Chroma reports a full disk as a failed write ("Error in compaction"),
        # so the free space is said alongside.
        free = shutil.disk_usage(index_dir).free / 1e6
        raise UserError(f"cannot write the index in {index_dir}/: {exc} ({free:.1f} MB free on its disk)") from None
    report.seconds = time.perf_counter() - t0
    return report


def _os_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _index_into(settings: Settings, embedder, index_dir: Path, paths: list[Path], report: IndexReport,
                rebuild: bool, console) -> None:
    root = settings.seeds_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(index_dir, os.W_OK):
        raise UserError(f"the index folder {index_dir}/ is read-only: it can be searched but not updated")
    with _index_lock(index_dir), _Progress(console) as progress:
        _drop_abandoned_builds(index_dir)
        desired, shas, failed = load_chunks(
            paths, root, settings.chunk_max_chars, report, progress, settings.doc_max_mb
        )
        # Every run that changes anything writes a new build and switches
        # CURRENT to it at the end: the live build is never written, so a
        # server searching it (this process or another) is neither slowed by
        # Chroma applying the new vectors nor shown a half-done run.
        if rebuild or ChunkStore.current_build(index_dir) is None:
            store = ChunkStore.create(index_dir, embedder.name, embedder.dim, settings.chunk_max_chars)
        else:
            store = ChunkStore.open(index_dir, embedder.name)
        existing = store.ids_by_source()
        existing_ids = {i for ids in existing.values() for i in ids}
        # A file that failed to load keeps whatever it had in the index.
        keep_ids = {i for src in failed for i in existing.get(src, ())}
        new = [c for cid, c in desired.items() if cid not in existing_ids]
        stale = sorted(existing_ids - desired.keys() - keep_ids)
        # An unchanged chunk of a changed file may have moved (a line added
        # above it) or come under another heading: its citation offsets must
        # follow, and a new heading is part of what is embedded.
        changed = {src for src, sha in shas.items() if src in existing and store.manifest.files.get(src) != sha}
        moved = _moved_chunks(store, [c for c in desired.values() if c.source in changed and c.id in existing_ids])
        reheaded = [c for c in moved if c.heading != moved[c]]
        new.extend(reheaded)
        known_sources = set(existing)
        report.added = sum(1 for c in new if c.source not in known_sources)
        report.updated = len(new) - report.added + len(moved) - len(reheaded)
        report.removed = len(stale)
        report.unchanged = len(desired.keys() & existing_ids) - len(moved)
        files = dict(shas)
        for src in failed:
            if src in store.manifest.files:
                files[src] = store.manifest.files[src]
        if store.is_live() and not (new or stale or moved) and files == store.manifest.files:
            report.total_chunks = store.count()
            return  # nothing changed: no new build
        if store.is_live():
            store = store.copy_as_new_build()
        # Embed and store new chunks batch by batch (into the new build).
        task = progress.task("embedding chunks", len(new))
        bs = max(1, settings.embed_batch_size)
        for i in range(0, len(new), bs):
            checkpoint()
            batch = new[i : i + bs]
            vectors = embedder.embed_passages([_passage_text(c) for c in batch])
            store.upsert(batch, vectors, shas)
            report.embedded += len(batch)
            progress.advance(task, len(batch))
        store.update_metadata([c for c in moved if c.heading == moved[c]], shas)
        store.delete(stale)
        store.settle()
        store.save_manifest(files)
        store.make_current()
        report.total_chunks = store.count()


def _moved_chunks(store: ChunkStore, chunks: list[Chunk]) -> dict[Chunk, str]:
    """The chunks whose stored offsets, heading or position differ -> their stored heading."""
    stored = store.get_chunks([c.id for c in chunks])
    out = {}
    for c in chunks:
        old = stored.get(c.id)
        if old is not None and (old.start, old.end, old.heading, old.ordinal) != (c.start, c.end, c.heading, c.ordinal):
            out[c] = old.heading
    return out


@contextmanager
def _index_lock(index_dir: Path):
    """One indexer at a time per index (CLI and UI uploads may overlap)."""
    with open(index_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _drop_abandoned_builds(index_dir: Path) -> None:
    """A build without a manifest was killed mid-rebuild (we hold the lock,
    so none is in progress): remove it."""
    current = ChunkStore.current_build(index_dir)
    for d in index_dir.glob("build-*"):
        if d.is_dir() and d != current and not (d / "manifest.json").exists():
            shutil.rmtree(d, ignore_errors=True)


def _passage_text(chunk: Chunk) -> str:
    """What is embedded: the chunk with its section heading as context."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
