"""The Assistant: one object that indexes, searches and answers.

The CLI, Gradio UI, HTTP API and eval runner are thin shells over it.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from pathlib import Path
from typing import Iterator

from rag.settings import Settings, offline_environment
from rag.types import Answer, Hit, UserError

MAX_K = 50  # passages per question, for every entry point (CLI, API, page)
_SAFE_NAME_RE = re.compile(r"[^\w.\-\u3400-\u9fff]+")


def safe_filename(name: str) -> str:
    """A file name that cannot leave the documents folder: basename only,
    no leading dots, only word characters, CJK, '.', '-'."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = _SAFE_NAME_RE.sub("_", name).lstrip(".")
    return name[:120]


class Assistant:
    """Retrieval-augmented QA over the documents in settings.seeds_dir."""

    def __init__(self, settings: Settings, embedder, store=None):
        from rag.answer import ExtractiveAnswerer

        self.settings = settings
        self.embedder = embedder
        self._lock = threading.RLock()
        self._searcher = None
        self._store = store
        self.extractive = ExtractiveAnswerer()
        self._answerer = None
        self.notice = ""

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
                from rag.store import ChunkStore

                store = self._store or ChunkStore.open(self.settings.index_dir, self.embedder.name)
                self._searcher = Searcher(self.settings, store, self.embedder)
                self._update_corpus_stats()
            return self._searcher

    def _update_corpus_stats(self) -> None:
        # The extractive answerer weighs query terms by the keyword index's own tokens.
        self.extractive.corpus_tokens = [set(t) for t in self._searcher.keyword.tokens]

    def index(self, rebuild: bool = False, console=None):
        """Bring the index up to date with the documents folder."""
        from rag.indexer import index_folder
        from rag.store import ChunkStore

        with self._lock:
            report = index_folder(self.settings, self.embedder, rebuild=rebuild, console=console)
            store = ChunkStore.open(self.settings.index_dir, self.embedder.name)
            if self._searcher is not None:
                self._searcher.refresh(store)
                self._update_corpus_stats()
            self._store = store
            return report

    def add_document(self, filename: str, data: bytes):
        """Save an uploaded file into the documents folder and index it.

        Checks extension and size first and decodes the bytes before anything
        is written, so a bad file leaves both the folder and the index as they
        were."""
        from rag.ingest import SUPPORTED_SUFFIXES, decode_bytes

        name = safe_filename(filename or "")
        if not name or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UserError(
                f"{filename!r}: only {', '.join(SUPPORTED_SUFFIXES)} files can be added"
            )
        limit = self.settings.upload_max_mb * 1024 * 1024
        if len(data) > limit:
            raise UserError(f"{name}: {len(data) / 1e6:.1f} MB is over the {self.settings.upload_max_mb:g} MB limit")
        decode_bytes(data, name)  # raises UserError for empty/binary/undecodable files
        seeds = self.settings.seeds_dir.resolve()
        target = (seeds / name).resolve()
        if target.parent != seeds:  # belt and braces: never write outside seeds/
            raise UserError(f"{filename!r}: invalid file name")
        with self._lock:
            previous = target.read_bytes() if target.exists() else None
            tmp = target.with_name(f".{name}.upload")
            tmp.write_bytes(data)
            tmp.replace(target)
            try:
                return self.index()
            except Exception:
                # Put the folder back as it was; the index itself is only
                # changed batch by batch and reconciles on the next run.
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(previous)
                raise

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
            info["documents"] = len({c.source for c in s.chunks})
            info["chunks"] = len(s.chunks)
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
            from rag.generate import make_answerer
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
        return self.searcher.search(question, k)

    @property
    def retriever(self):
        """The hybrid search as a LlamaIndex BaseRetriever."""
        from rag.retrieval import make_llama_retriever

        return make_llama_retriever(self.searcher, self.settings.top_k)

    def _prepare(self, question: str, history, k, answerer):
        from rag.lang import detect_lang

        question = _check_question(question)
        standalone = question
        if history:
            from rag.conversation import standalone_question

            standalone = standalone_question(question, list(history), getattr(answerer, "llm", None))
        lang = detect_lang(question)
        k = _check_k(self.settings.top_k if k is None else k)
        hits = self.searcher.search(standalone, k, variants=self._query_variants(standalone, answerer))
        return question, standalone, lang, hits

    def _query_variants(self, question: str, answerer) -> list[str]:
        """Other renderings of an English question to search with: its Chinese translation by
        the LLM when one answers (setting `query_translation`, bench/query_translation.py)."""
        from rag.lang import detect_lang

        translate = getattr(answerer, "translate", None)
        if self.settings.query_translation == "off" or not callable(translate) or detect_lang(question) != "en":
            return []
        translation = translate(question)
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
                      mode=getattr(answerer, "mode", "extractive"), hits=[], standalone_question=question)

    def ask(self, question: str, *, k: int | None = None, history=None, mode: str | None = None) -> Answer:
        answerer = self._answerer_for(mode)
        if (meta := self._meta_answer(question, answerer)) is not None:
            return meta
        question, standalone, lang, hits = self._prepare(question, history, k, answerer)
        ans = answerer.answer(standalone, hits, lang)
        return self._finish(ans, question, standalone, hits)

    def stream(self, question: str, *, k: int | None = None, history=None, mode: str | None = None) -> Iterator[str | Answer]:
        answerer = self._answerer_for(mode)
        if (meta := self._meta_answer(question, answerer)) is not None:
            yield meta.text
            yield meta
            return
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
    return question


def _check_k(k) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be an integer from 1 to {MAX_K}, not {k!r}")
    return k
