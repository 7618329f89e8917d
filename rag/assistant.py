"""The Assistant: one object that indexes, searches and answers.

The CLI, Gradio UI, HTTP API and eval runner are thin shells over it.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
import unicodedata
from pathlib import Path
from typing import Iterator

from rag.priority import foreground
from rag.settings import Settings, offline_environment
from rag.types import Answer, Hit, UserError

log = logging.getLogger(__name__)

MAX_K = 50  # passages per question, for every entry point (CLI, API, page)
RELOAD_CHECK_SECONDS = 1.0  # how often a search looks for a build made by another process
_SAFE_NAME_RE = re.compile(r"[^\w.\-\u3400-\u9fff]+")


def safe_filename(name: str) -> str:
    """A file name that cannot leave the documents folder: basename only,
    no leading dots, only word characters, CJK, '.', '-'."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = _SAFE_NAME_RE.sub("_", name).lstrip(".")
    return name[:120]


def _save_new_file(seeds: Path, name: str, data: bytes) -> Path:
    """Write data as seeds/name, or seeds/stem-2.ext, -3, ... when the name is
    taken (never replacing a file); UserError when the same bytes are there."""
    stem, suffix = Path(name).stem, Path(name).suffix
    tmp = seeds / f".{name}.{os.getpid()}.upload"
    try:
        tmp.write_bytes(data)
        for n in range(1, 1000):
            target = seeds / (name if n == 1 else f"{stem}-{n}{suffix}")
            if target.resolve().parent != seeds:  # belt and braces: never write outside seeds/
                raise UserError(f"{name!r}: invalid file name")
            if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
                raise UserError(f"{name}: this file is already in the documents folder as {target.name}")
            try:
                os.link(tmp, target)  # atomic, and fails when the name is taken
                return target
            except FileExistsError:
                continue
        raise UserError(f"{name}: too many documents with this name")
    except OSError as exc:
        raise UserError(f"{name}: cannot save the file ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def index_signature(index_dir: Path) -> tuple | None:
    """What identifies the index on disk: the live build and its manifest
    (rewritten by every indexing run), or None when there is none."""
    try:
        current = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
        st = (index_dir / current / "manifest.json").stat()
    except (OSError, UnicodeDecodeError):
        return None
    return current, st.st_ino, st.st_mtime_ns, st.st_size


def run_low_priority(fn, *args, **kwargs):
    """Run fn in a new background thread and wait for it: its checkpoints
    yield to requests in flight (rag/priority.py). Not niced: a niced thread
    holding the GIL while the OS runs other processes stalled every request
    (priority inversion), measured with bench/upload_under_load.py."""
    result: dict = {}

    def target():
        from rag.priority import mark_background

        mark_background()
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="rag-background", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class Assistant:
    """Retrieval-augmented QA over the documents in settings.seeds_dir.

    Searches never wait for indexing: a build (an upload, or `rag index` run
    from another process) is written while the searcher keeps answering from
    the chunks it holds, and the searcher swaps to the new state when the
    build is done. In-process indexing runs in a background thread that
    yields to requests."""

    def __init__(self, settings: Settings, embedder, store=None):
        from rag.answering.extractive import ExtractiveAnswerer

        self.settings = settings
        self.embedder = embedder
        self._lock = threading.RLock()  # short: lazy creation of the searcher/answerer
        self._write_lock = threading.RLock()  # one in-process indexing (or reload) at a time
        self._searcher = None
        self._store = store
        self._loaded: tuple | None = None  # index_signature() of what the searcher holds
        self._next_check = 0.0
        self._reloading = False
        self._indexing = False
        self._embed_worker = None
        self.extractive = ExtractiveAnswerer()
        self._answerer = None
        self.notice = ""
        self._warm_reloads = False  # set by warm(): each reloaded index's vocabulary is warmed too
        self._vocab_warmer: threading.Thread | None = None

    # ---- construction --------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides) -> "Assistant":
        offline_environment()
        settings = settings or Settings(**overrides)
        if overrides and settings is not None:
            settings = settings.model_copy(update=overrides)
        from rag.embedmodel import load_embedder

        return cls(settings, load_embedder(settings))

    # ---- index ---------------------------------------------------------
    @property
    def searcher(self):
        """The hybrid searcher over the live index (opened on first use)."""
        with self._lock:
            if self._searcher is None:
                from rag.retrieval import Searcher

                loaded = index_signature(self.settings.index_dir)
                store = self._store or self._open_store()
                self._searcher = Searcher(self.settings, store, self.embedder)
                self._loaded = loaded
                self._update_corpus_stats()
            return self._searcher

    def _open_store(self):
        from rag.store import ChunkStore

        s = self.settings
        return ChunkStore.open(s.index_dir, self.embedder.name, chroma_url=s.chroma_url, page_size=s.chroma_page_size)

    def _update_corpus_stats(self) -> None:
        # The gate weighs question terms by the keyword index's own document
        # frequencies and bridges English names through the documents' vocabulary.
        from rag.answering.gate import AnswerabilityGate

        self.extractive.gate = AnswerabilityGate(self.extractive.gate.model, corpus=self._searcher)

    def index(self, rebuild: bool = False, console=None, *, low_priority: bool = False):
        """Bring the index up to date with the documents folder.

        Searches keep being answered meanwhile. `low_priority` (a server's
        uploads) runs the work in a background thread that lets requests in
        flight go first."""
        from rag.indexer import index_folder

        def work():
            embedder = self._background_embedder() if low_priority else self.embedder
            report = index_folder(self.settings, embedder, rebuild=rebuild, console=console)
            self._reload()
            return report

        with self._write_lock:
            self._indexing = True
            try:
                return run_low_priority(work) if low_priority else work()
            finally:
                self._indexing = False

    def _background_embedder(self):
        """The embedder for background indexing: the real model runs in a niced worker
        process (rag/embedworker.py), so that searches embedding their query meanwhile
        neither wait for its lock nor share its threads. Kept for the next upload; the
        worker exits by itself when idle. Other embedders (tests' fakes, cheap) run here."""
        from rag.embedmodel import Embedder
        from rag.embedworker import EmbedderProcess

        if not isinstance(self.embedder, Embedder):
            return self.embedder
        with self._lock:
            if self._embed_worker is None:
                self._embed_worker = EmbedderProcess(self.settings, self.embedder)
            return self._embed_worker

    def close(self) -> None:
        """Stop helper processes (the background embedding worker)."""
        with self._lock:
            worker, self._embed_worker = self._embed_worker, None
        if worker is not None:
            worker.close()

    def _reload(self) -> None:
        """Point the searcher at the index as it is on disk now (built outside
        the search path, swapped in at the end)."""
        from rag.store import forget_open_clients

        loaded = index_signature(self.settings.index_dir)
        forget_open_clients()  # builds replaced since are not kept in memory by Chroma's cache
        store = self._open_store()
        with self._lock:
            searcher = self._searcher
        if searcher is not None:
            searcher.refresh(store)
            with self._lock:
                self._update_corpus_stats()
            if self._warm_reloads:
                # the new index's vocabulary and its name readings, built before the next
                # English (or Chinese-over-English) question needs them, as at start
                self._vocab_warmer = threading.Thread(target=self._warm_vocab, name="rag-warm-vocab", daemon=True)
                self._vocab_warmer.start()
        self._store = store
        self._loaded = loaded

    def _warm_vocab(self) -> None:
        try:
            self.searcher.vocab.warm()
        except Exception:  # noqa: BLE001 - a warm-up must not take the server down
            log.debug("vocabulary warm-up failed", exc_info=True)

    def _maybe_reload(self) -> None:
        """Notice a build made by another process (`rag index` from the CLI):
        a cheap stat at most every RELOAD_CHECK_SECONDS, then a background
        reload; this search is answered from what the searcher holds."""
        now = time.monotonic()
        if now < self._next_check or self._indexing or self._reloading or self._searcher is None:
            return
        self._next_check = now + RELOAD_CHECK_SECONDS
        if index_signature(self.settings.index_dir) == self._loaded:
            return
        with self._lock:
            if self._reloading:
                return
            self._reloading = True
        threading.Thread(target=self._background_reload, name="rag-reload", daemon=True).start()

    def _background_reload(self) -> None:
        try:
            with self._write_lock:
                if index_signature(self.settings.index_dir) != self._loaded:
                    run_low_priority(self._reload)
        except Exception:  # keep answering from what we have; the next check retries
            log.exception("reloading the index failed")
        finally:
            self._reloading = False

    def add_document(self, filename: str, data: bytes):
        """Save an uploaded file into the documents folder and index it.

        Checks extension and size first and decodes the bytes before anything
        is written, so a bad file leaves both the folder and the index as they
        were. A file never replaces another: a different file with the same
        name is saved under a free name (`report.saved_as`)."""
        from rag.ingest import SUPPORTED_SUFFIXES, check_size, decode_bytes

        name = safe_filename(filename or "")
        if not name or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UserError(
                f"{filename!r}: only {', '.join(SUPPORTED_SUFFIXES)} files can be added"
            )
        check_size(len(data), name, self.settings.upload_max_mb, "RAG_UPLOAD_MAX_MB")
        check_size(len(data), name, self.settings.doc_max_mb, "RAG_DOC_MAX_MB")
        decode_bytes(data, name)  # raises UserError for empty/binary/undecodable files
        seeds = self.settings.seeds_dir.resolve()
        with self._write_lock:
            target = _save_new_file(seeds, name, data)
            try:
                report = self.index(low_priority=True)
            except Exception:
                # Put the folder back as it was; the index itself is only
                # changed batch by batch and reconciles on the next run.
                target.unlink(missing_ok=True)
                raise
            report.saved_as = target.name
            return report

    def status(self) -> dict:
        from rag.store import ChunkStore

        build = ChunkStore.current_build(self.settings.index_dir)
        info = {
            "documents": 0,
            "chunks": 0,
            "embed_model": self.embedder.name,
            "llm": self.llm_status(),
            "index": str(build) if build else None,
        }
        if build is not None:
            s = self.searcher
            s.reload_if_changed()
            info["documents"] = len(s.keyword.source_counts())
            info["chunks"] = len(s.keyword)
        return info

    def original_text(self, source: str) -> str:
        """The decoded original file, so citation spans can be shown in context."""
        from rag.ingest import load_document

        seeds = self.settings.seeds_dir.resolve()
        path = (seeds / source).resolve()
        if not path.is_relative_to(seeds) or not path.is_file():
            raise UserError(f"unknown source: {source}")
        return load_document(path, seeds).text

    # ---- answering -----------------------------------------------------
    # Questions that only exercise the code paths (any text would do): one Chinese, one English.
    _WARM_QUESTIONS = ("这是关于什么的？", "What is this about?")

    def warm(self) -> None:
        """Pay the first questions' one-time costs now (`rag serve` calls this in a background
        thread at start): the embedding model's first run, jieba, the gate's and picker's
        files, and for English the CC-CEDICT reverse index and the index's vocabulary with its
        readings of names (pinyin, Japanese, transliteration skeletons). Without it the first
        Chinese question of a process took 1.2 s instead of 0.03 s, and the first English one
        naming someone 2.3 s (`python bench/first_question.py`, the seed index). Extractive
        only: it loads no LLM. Never raises: a failure here is the first real question's to
        report. From then on each index reload (an upload, a build by `rag index`) warms the
        new index's vocabulary in a background thread."""
        from rag.crossling import warm as warm_bridge
        from rag.lang import detect_lang

        try:
            warm_bridge()
            for q in self._WARM_QUESTIONS:
                self.extractive.answer(q, self.search(q), detect_lang(q))
            self.searcher.vocab.warm()  # names in English questions: readings, transliterations
        except Exception:  # noqa: BLE001 - a warm-up must not take the server down
            log.debug("warm-up failed", exc_info=True)
        self._warm_reloads = True

    @property
    def answerer(self):
        with self._lock:
            if self._answerer is None:
                self._answerer, self.notice = self._make_answerer(None)
            return self._answerer

    def _make_answerer(self, mode: str | None):
        if mode == "extractive" or (mode is None and self.settings.llm == "extractive"):
            return self.extractive, ""
        try:
            from rag.answering.flow import make_answerer
        except ImportError:
            return self.extractive, "LLM support is not installed; answering in extractive mode"
        settings = self.settings
        if mode == "llm" and settings.llm in ("auto", "extractive"):
            settings = settings.model_copy(update={"llm": "auto"})
        return make_answerer(settings, self.extractive)

    def _answerer_for(self, mode: str | None):
        return self.extractive if mode == "extractive" else self.answerer

    def llm_status(self) -> str:
        try:
            from rag.llm import llm_status
        except ImportError:
            return "extractive"
        if self.settings.llm == "extractive":
            return "extractive"
        ok, msg = llm_status(self.settings)
        return msg

    def search(self, question: str, k: int | None = None) -> list[Hit]:
        question = _check_question(question)
        k = _check_k(self.settings.top_k if k is None else k)
        searcher = self.searcher
        self._maybe_reload()
        with foreground():
            return searcher.search(question, k)

    @property
    def retriever(self):
        """The hybrid search as a LlamaIndex BaseRetriever."""
        from rag.retrieval import make_llama_retriever

        return make_llama_retriever(self.searcher, self.settings.top_k)

    def _prepare(self, question: str, history, k, answerer):
        from rag.lang import detect_lang

        question = _check_question(question)
        history = _check_history(history, self.settings)
        standalone = question
        if history:
            from rag.conversation import standalone_question

            standalone = standalone_question(question, list(history), answerer.llm)
        lang = detect_lang(question)
        k = _check_k(self.settings.top_k if k is None else k)
        searcher = self.searcher
        self._maybe_reload()
        hits = searcher.search(standalone, k, variants=self._query_variants(standalone, answerer))
        return question, standalone, lang, hits

    def retrieve(self, question: str, *, k: int | None = None, mode: str | None = None) -> tuple[str, list[Hit]]:
        """(language, passages) as an answer in `mode` reads them: for an English question
        in LLM mode the search includes the model's Chinese translation of it. For tools
        that study the answering path (scripts/fit_judge.py)."""
        answerer = self._answerer_for(mode)
        with foreground():
            _, _, lang, hits = self._prepare(question, None, k, answerer)
        return lang, hits

    def _query_variants(self, question: str, answerer) -> list[str]:
        """Other renderings of an English question to search with: its Chinese translation by
        the LLM when one answers (setting `query_translation`, bench/query_translation.py)."""
        from rag.lang import detect_lang

        if self.settings.query_translation == "off" or detect_lang(question) != "en":
            return []
        translation = answerer.translate(question)
        return [translation] if translation else []

    def _meta_answer(self, question: str, answerer) -> Answer | None:
        """The refusal for a question about the assistant's own instructions (rag/guard.py),
        in every mode: such a question is not about the documents."""
        from rag.guard import is_meta_question, meta_refusal
        from rag.lang import detect_lang

        question = _check_question(question)
        if not is_meta_question(question):
            return None
        lang = detect_lang(question)
        return Answer(text=meta_refusal(lang), refused=True, citations=[], question=question, lang=lang,
                      mode=answerer.mode, hits=[], standalone_question=question)

    def ask(self, question: str, *, k: int | None = None, history=None, mode: str | None = None) -> Answer:
        answerer = self._answerer_for(mode)
        if (meta := self._meta_answer(question, answerer)) is not None:
            return meta
        with foreground():
            question, standalone, lang, hits = self._prepare(question, history, k, answerer)
            ans = answerer.answer(standalone, hits, lang)
            return self._finish(ans, question, standalone, hits)

    def stream(self, question: str, *, k: int | None = None, history=None, mode: str | None = None) -> Iterator[str | Answer]:
        answerer = self._answerer_for(mode)
        if (meta := self._meta_answer(question, answerer)) is not None:
            yield meta.text
            yield meta
            return
        with foreground():
            question, standalone, lang, hits = self._prepare(question, history, k, answerer)
            for item in answerer.stream(standalone, hits, lang):
                if isinstance(item, Answer):
                    yield self._finish(item, question, standalone, hits)
                else:
                    yield item

    def _finish(self, ans: Answer, question: str, standalone: str, hits: list[Hit]) -> Answer:
        ans.question = question
        ans.standalone_question = standalone
        ans.hits = ans.hits or hits
        if not ans.notice and self.notice:
            ans.notice = self.notice
        return ans


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise UserError("the question is empty")
    question = question.strip()
    if len(question) > 2000:
        raise UserError("the question is too long (over 2000 characters)")
    if not _is_text(question):
        # e.g. a command-line argument that was not UTF-8 (Python keeps such
        # bytes as lone surrogates, which cannot be printed or stored)
        raise UserError("the question is not valid text (it holds bytes that are not UTF-8)")
    return question


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_history(history, settings: Settings) -> list[tuple[str, str]]:
    """Earlier turns are re-read for every answer, so their number and size are bounded."""
    if not history:
        return []
    pairs = list(history)
    if len(pairs) > settings.history_max_turns:
        raise UserError(
            f"the conversation has {len(pairs)} earlier turns; at most {settings.history_max_turns} are "
            "accepted (RAG_HISTORY_MAX_TURNS): start a new chat"
        )
    chars = 0
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise UserError("history must be a list of (question, answer) text pairs")
        if not all(_is_text(t) for t in pair):
            raise UserError("the conversation holds text that is not valid Unicode")
        chars += len(pair[0]) + len(pair[1])
    if chars > settings.history_max_chars:
        raise UserError(
            f"the conversation is {chars} characters long; at most {settings.history_max_chars} are "
            "accepted (RAG_HISTORY_MAX_CHARS): start a new chat"
        )
    return [tuple(p) for p in pairs]


def _check_k(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be an integer from 1 to {MAX_K}, not {k!r}")
    return k
