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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A `chroma run` server on a free local port for the whole session; stopped at the end."""
    import subprocess
    import sys
    import time
    import urllib.request

    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.fail(f"the chroma command is missing next to {sys.executable} (it ships with chromadb)")
    path = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    log = open(path.parent / "chroma-server.log", "wb")
    proc = subprocess.Popen([str(exe), "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"chroma run did not start: see {log.name}")
            time.sleep(0.2)
    yield url
    from rag.procs import stop_process

    stop_process(proc)
    log.close()


@pytest.fixture(params=["embedded", "server"])
def chroma_url(request):
    """Store and retrieval tests run against the embedded client and a Chroma server."""
    return request.getfixturevalue("chroma_server") if request.param == "server" else ""


@pytest.fixture
def settings_for(workdir, chroma_url):
    from rag.settings import Settings

    def make(**kw):
        kw.setdefault("chroma_url", chroma_url)
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
