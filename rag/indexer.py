"""Incremental indexing: seeds folder -> chunks -> vectors (Chroma) + tokens (keyword index).

Files whose size and mtime (then sha256) match the manifest are not read; chunk ids are
content hashes, so only new chunks are embedded; `rebuild` fills a new build and switches to it atomically.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chromadb.errors import ChromaError

from rag.chunking import TEXT_VERSION, chunk_document
from rag.ingest import check_size, discover, load_document
from rag.normalize import Mojibake, clean_document
from rag.priority import checkpoint, is_background
from rag.settings import Settings
from rag.keyword_index import EncodedDocs, KeywordIndex, drop_old, new_folder
from rag.store import ChunkStore, FileRecord
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
    mojibake: dict[str, list[Mojibake]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # symbolic links, not followed
    saved_as: str = ""  # an upload's file name in the documents folder

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
    """rich progress (with chunks/s while embedding) when a console is given, silent otherwise."""

    def __init__(self, console):
        self.console = console
        self.progress = None

    def __enter__(self):
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task):
                    speed = task.finished_speed or task.speed or (
                        task.completed / task.elapsed if task.completed and task.elapsed else None)
                    return Text(f"{speed:,.0f} {task.fields.get('unit', 'items')}/s" if speed else "")

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                TimeElapsedColumn(), console=self.console, transient=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int, unit: str = "files"):
        return self.progress.add_task(description, total=total, unit=unit) if self.progress else None

    def advance(self, task, n: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, n)


@dataclass
class _Scan:
    """What changed since the last run, found from size and mtime, then sha256."""

    records: dict[str, FileRecord]  # the manifest's records, updated for every file read
    changed: dict[str, list[Chunk]]  # source -> its chunks now (new or changed files)
    shas: dict[str, str]
    removed: set[str]
    failed: set[str]
    unchanged: set[str]


def scan(paths: list[Path], root: Path, max_chars: int, records: dict[str, FileRecord], force: set[str],
         report: IndexReport, progress: _Progress, max_mb: float | None = None) -> _Scan:
    """Skip files whose size and mtime match the manifest without reading them; read the
    others, and chunk those whose bytes (sha256) differ. Unreadable files are reported,
    not fatal, and keep what they had in the index."""
    records = dict(records)
    out = _Scan(records, {}, {}, set(), set(), set())
    seen: set[str] = set()
    task = progress.task("reading files", len(paths))
    for p in paths:
        rel = p.relative_to(root).as_posix()
        seen.add(rel)
        rec = records.get(rel)
        try:
            st = p.stat()
        except OSError as exc:
            report.errors.append(f"{rel}: cannot read file ({exc.strerror or exc})")
            out.failed.add(rel)
            continue
        if rec and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns and rel not in force:
            out.unchanged.add(rel)
            progress.advance(task)
            continue
        try:
            if any("\ud800" <= ch <= "\udfff" for ch in rel):
                raise UserError(f"{rel.encode('utf-8', 'replace').decode()}: file name is not valid UTF-8 text; rename it")
            if max_mb is not None:
                check_size(st.st_size, rel, max_mb, "RAG_DOC_MAX_MB")
            doc = load_document(p, root)
            if rec and rec.sha256 == doc.sha256 and rel not in force:
                records[rel] = FileRecord(doc.sha256, st.st_size, st.st_mtime_ns)
                out.unchanged.add(rel)
                continue
            cleaned = clean_document(doc.text, markdown=doc.is_markdown)
            if cleaned.mojibake:
                report.mojibake[doc.source] = cleaned.mojibake
            out.changed[rel] = chunk_document(doc, max_chars, cleaned)
            out.shas[rel] = doc.sha256
            records[rel] = FileRecord(doc.sha256, st.st_size, st.st_mtime_ns)
        except UserError as exc:
            report.errors.append(str(exc))
            out.failed.add(rel)
        finally:
            progress.advance(task)
            checkpoint()
    out.removed = {src for src in records if src not in seen}
    for src in out.removed:
        records.pop(src, None)
    return out


def _tokenize_texts(texts: list[str]) -> list[list[str]]:
    from rag.tokens import tokenize

    return [tokenize(t) for t in texts]


class _Tokenizer:
    """Search tokens of the chunks, computed while the main thread embeds and writes.

    Cutting holds the GIL: next to a model (torch releases the GIL) a thread is enough;
    next to Chroma's writes (which hold the GIL) only another process runs alongside,
    so large batches go to a worker process (`python -m rag.tokenworker`: a fresh
    interpreter, nothing forked from this one's threads, no re-import of __main__).
    Small batches are cut in a thread: the tokeniser (rjieba, rag/tokens.py) loads its
    dictionary in a fraction of a second, less than a process costs to start."""

    PROCESS_MIN = 5000  # chunks; below this a thread costs less than starting a process
    BACKGROUND_PROCESS_MIN = 500
    SLICE = 2000

    def __init__(self, chunks: list[Chunk]):
        from rag.tokenworker import TokenizerProcess

        self.chunks = chunks
        texts = [f"{c.heading} {c.text}" for c in chunks]
        self.proc = self.pool = None
        # in the background (a server's upload) the process is niced and keeps the
        # GIL free for requests, so it is worth its start-up cost sooner
        least = self.BACKGROUND_PROCESS_MIN if is_background() else self.PROCESS_MIN
        if len(texts) >= least:
            self.proc = TokenizerProcess([texts[i : i + self.SLICE] for i in range(0, len(texts), self.SLICE)])
        else:
            self.pool = ThreadPoolExecutor(1)
            self.future = self.pool.submit(_tokenize_texts, texts)

    def result(self) -> EncodedDocs:
        from rag.tokenworker import encode

        ids, sources = [c.id for c in self.chunks], [c.source for c in self.chunks]
        if self.proc is not None:
            return EncodedDocs.join(ids, sources, self.proc.encoded(), self.chunks)
        try:
            tokens = self.future.result()
        finally:
            self.pool.shutdown()
        return EncodedDocs.join(ids, sources, [encode(tokens)], self.chunks)

    def cancel(self) -> None:
        if self.proc is not None:
            self.proc.cancel()
        else:
            self.pool.shutdown(wait=False, cancel_futures=True)


def index_folder(settings: Settings, embedder, *, rebuild: bool = False, console=None) -> IndexReport:
    """Bring the index in settings.index_dir up to date with settings.seeds_dir (see
    `_index_folder`); a full disk or a read-only folder becomes one clear UserError, and
    the live index is untouched (new chunks are written batch by batch, the manifest last)."""
    index_dir = settings.index_dir
    try:
        return _index_folder(settings, embedder, rebuild=rebuild, console=console)
    except OSError as exc:
        raise UserError(f"cannot write the index in {index_dir}/: {_os_reason(exc)}") from None
    except ChromaError as exc:
        # Chroma reports a full disk as a failed write ("Error in compaction"),
        # so the free space is said alongside.
        free = shutil.disk_usage(index_dir).free / 1e6 if index_dir.exists() else 0.0
        raise UserError(f"cannot write the index in {index_dir}/: {exc} ({free:.1f} MB free on its disk)") from None


def _os_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _index_folder(settings: Settings, embedder, *, rebuild: bool = False, console=None) -> IndexReport:
    """Bring the index in settings.index_dir up to date with settings.seeds_dir.

    Order of writes, so that a kill -9 at any point leaves an index that answers and a
    next run that repairs it: journal (sources about to change) -> new vectors, batch by
    batch -> stale chunks deleted -> a new keyword index folder -> the manifest naming it
    (the commit) -> journal removed -> (rebuild) CURRENT switched.
    """
    t0 = time.perf_counter()
    report = IndexReport(rebuilt=rebuild)
    root = settings.seeds_dir
    paths = discover(root, report.skipped)
    report.files = len(paths)
    index_dir = settings.index_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(index_dir, os.W_OK):
        raise UserError(f"the index folder {index_dir}/ is read-only: it can be searched but not updated")
    opts = {"chroma_url": settings.chroma_url, "page_size": settings.chroma_page_size}
    with _index_lock(index_dir), _Progress(console) as progress:
        _drop_abandoned_builds(index_dir, settings)
        fresh = rebuild or ChunkStore.current_build(index_dir) is None
        if fresh:
            store = ChunkStore.create(index_dir, embedder.name, embedder.dim, settings.chunk_max_chars, **opts)
        else:
            store = ChunkStore.open(index_dir, embedder.name, **opts)
        keyword = store.keyword_index()
        force = _read_journal(store.build_dir)
        from_chroma: dict[str, set[str]] = {}
        if keyword is None:
            keyword = KeywordIndex.empty()
            if not fresh:
                # an index made before keyword indexes were stored: every file is read once
                # more and its chunks tokenised; vectors already in Chroma are kept
                from_chroma = store.ids_by_source()
                force |= set(from_chroma) | set(store.manifest.files)
        elif force:
            # a run was killed mid-way: Chroma may hold chunks the keyword index does not
            from_chroma = store.ids_by_source(where={"source": {"$in": sorted(force)}})
        if not fresh and (store.manifest.text_version != TEXT_VERSION
                          or store.manifest.chunk_max_chars != settings.chunk_max_chars):
            # chunks made by another version of cleaning/chunking, or to another size:
            # every file is chunked again (unchanged chunks keep their vectors)
            force |= set(store.manifest.files)
            store.manifest.text_version = TEXT_VERSION
            store.manifest.chunk_max_chars = settings.chunk_max_chars
        sc = scan(paths, root, settings.chunk_max_chars, store.manifest.records(), force, report, progress,
                  settings.doc_max_mb)
        touched = set(sc.changed) | sc.removed | (force - sc.failed)
        existing = keyword.ids_of(touched)
        for src, ids in from_chroma.items():
            if src in touched:
                existing.setdefault(src, set()).update(ids)
        existing_ids = {i for ids in existing.values() for i in ids}
        desired = {c.id: c for chunks in sc.changed.values() for c in chunks}
        new = [c for cid, c in desired.items() if cid not in existing_ids]
        kept = [c for cid, c in desired.items() if cid in existing_ids]
        # A kept chunk of a changed file that now sits under another heading is embedded
        # again (the heading is part of what is embedded); offsets are refreshed below.
        if kept:
            stored = store.get([c.id for c in kept])
            reheaded = {c.id for c in kept if c.id in stored and stored[c.id].heading != c.heading}
            if reheaded:
                new += [c for c in kept if c.id in reheaded]
                kept = [c for c in kept if c.id not in reheaded]
        stale = sorted(existing_ids - desired.keys())
        counts = keyword.source_counts()
        report.added = sum(1 for c in new if not existing.get(c.source))
        report.updated = len(new) - report.added
        report.removed = len(stale)
        report.unchanged = len(kept) + sum(counts.get(src, 0) for src in sc.unchanged | sc.failed)
        files = {k: v.__dict__ for k, v in sc.records.items()}
        if not touched and store.manifest.keyword:
            if files != store.manifest.files:  # only sizes/mtimes refreshed
                store.save_manifest(files)
            report.total_chunks = len(keyword)
        else:
            _write_journal(store.build_dir, touched)
            # Tokenise (for the keyword index) while the model embeds: torch releases the
            # GIL, so the two share the cores instead of taking turns.
            tokenizer = _Tokenizer(list(desired.values()))
            try:
                _embed_and_store(store, embedder, new, sc.shas, settings, progress, report)
            except BaseException:
                tokenizer.cancel()
                raise
            docs = tokenizer.result()
            store.delete(stale)
            store.update_metadata(kept, sc.shas)
            folder = new_folder(store.build_dir)
            keyword = keyword.updated(folder, touched, docs)
            previous = store.manifest.keyword
            store.save_manifest(files, keyword=folder.name, chunks=len(keyword))
            _clear_journal(store.build_dir)
            drop_old(store.build_dir, {folder.name, previous})
            report.total_chunks = len(keyword)
        if fresh:
            store.make_current()
    report.seconds = time.perf_counter() - t0
    return report


def _embed_and_store(store: ChunkStore, embedder, new: list[Chunk], shas: dict[str, str], settings: Settings,
                     progress: _Progress, report: IndexReport) -> None:
    """Embed in the model's batches, write to Chroma in large ones (each write is durable;
    Chroma's cost per call is high, so few large calls are much faster than many small)."""
    task = progress.task("embedding chunks", len(new), unit="chunks")
    group = max(settings.embed_batch_size, settings.upsert_batch_size)
    for i in range(0, len(new), group):
        batch = new[i : i + group]
        done = 0

        def on_batch(n_done: int) -> None:
            nonlocal done
            progress.advance(task, n_done - done)
            done = n_done
            checkpoint()

        vectors = embedder.embed_passages([passage_text(c) for c in batch], batch_callback=on_batch)
        progress.advance(task, len(batch) - done)
        store.upsert(batch, vectors, shas)
        report.embedded += len(batch)


_JOURNAL = "journal.json"


def _write_journal(build: Path, sources: set[str]) -> None:
    from rag.store import _atomic_write

    _atomic_write(build / _JOURNAL, json.dumps(sorted(sources), ensure_ascii=False))


def _read_journal(build: Path) -> set[str]:
    try:
        return set(json.loads((build / _JOURNAL).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return set()


def _clear_journal(build: Path) -> None:
    (build / _JOURNAL).unlink(missing_ok=True)


@contextmanager
def _index_lock(index_dir: Path):
    """One indexer at a time per index (CLI and UI uploads may overlap)."""
    with open(index_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _drop_abandoned_builds(index_dir: Path, settings: Settings) -> None:
    """A build without a manifest was killed mid-rebuild (we hold the lock,
    so none is in progress): remove it (and its collection on a server)."""
    current = ChunkStore.current_build(index_dir)
    abandoned = [d for d in index_dir.glob("build-*")
                 if d.is_dir() and d != current and not (d / "manifest.json").exists()]
    if not abandoned:
        return
    if settings.chroma_url:
        dropper = ChunkStore(abandoned[0], None, chroma_url=settings.chroma_url)  # type: ignore[arg-type]
        for d in abandoned:
            dropper.drop_build(d)
    else:
        for d in abandoned:
            shutil.rmtree(d, ignore_errors=True)


def passage_text(chunk: Chunk) -> str:
    """What is embedded: the chunk with its section heading as context."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
