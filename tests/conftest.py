"""Shared fixtures: a fast deterministic fake embedder for logic tests, and
a real-model assistant (built once per session) for the paths users run."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_e271bcc5b97e4740.txt"


class FakeEmbedder:
    """Hashed character-bigram vectors: similar texts get similar vectors,
    deterministic, no model, no torch. Counts how many passages it embedded."""

    dim = 256

    def __init__(self, name: str = "fake-bigram-256"):
        self.name = name
        self.passages_embedded = 0

    def _vec(self, text: str) -> np.ndarray:
        from rag.lang import to_simplified

        t = to_simplified(text).lower()
        v = np.zeros(self.dim, dtype=np.float32)
        for a, b in zip(t, t[1:]):
            h = int.from_bytes(hashlib.blake2b((a + b).encode(), digest_size=4).digest(), "little")
            v[h % self.dim] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v + 1.0 / np.sqrt(self.dim)

    def embed_queries(self, texts):
        return np.stack([self._vec(t) for t in texts])

    def embed_passages(self, texts, batch_callback=None):
        self.passages_embedded += len(texts)
        return np.stack([self._vec(t) for t in texts])


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture
def workdir(tmp_path):
    """A seeds folder holding the article and an empty index folder."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    shutil.copy(SEED, seeds / SEED.name)
    return tmp_path


@pytest.fixture
def settings_for(workdir):
    from rag.settings import Settings

    def make(**kw):
        return Settings(seeds_dir=workdir / "seeds", index_dir=workdir / "index", **kw)

    return make


@pytest.fixture(scope="session")
def real_assistant(tmp_path_factory):
    """The real embedding model over the real article, indexed once."""
    from rag.embedmodel import is_prepared
    from rag.settings import Settings

    settings = Settings()
    if not is_prepared(settings):
        if os.environ.get("CI"):
            pytest.fail("embedding model not prepared in CI: run `rag models prepare`")
        pytest.skip("embedding model not prepared (run `rag models prepare`)")
    base = tmp_path_factory.mktemp("real")
    (base / "seeds").mkdir()
    shutil.copy(SEED, base / "seeds" / SEED.name)
    from rag.assistant import Assistant

    s = Settings(seeds_dir=base / "seeds", index_dir=base / "index", llm="extractive")
    a = Assistant.from_settings(s)
    a.index()
    return a
