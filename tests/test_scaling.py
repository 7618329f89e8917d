"""Chroma as a server: two app processes over one `chroma run` server answer alike and
both follow an index update (and a rebuild) made by a third process, without a restart."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from rag.indexer import index_folder
from tests.conftest import ROOT, _free_port

SERVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import uvicorn
    from tests.conftest import FakeEmbedder
    from rag.settings import Settings
    from rag.assistant import Assistant
    from rag.server import create_app

    s = Settings(seeds_dir={seeds!r}, index_dir={index!r}, chroma_url={url!r}, llm="extractive")
    app = create_app(Assistant(s, FakeEmbedder()), s, with_ui=False)
    uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
    """
)


def _wait(url: str, proc) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("an app server exited at start")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail("an app server did not start")


def _top(url: str, query: str) -> dict:
    r = httpx.post(f"{url}/api/search", json={"query": query, "k": 3}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_two_app_servers_over_one_chroma_server(chroma_server, workdir, fake_embedder):
    from rag.settings import Settings

    s = Settings(seeds_dir=workdir / "seeds", index_dir=workdir / "index", chroma_url=chroma_server, llm="extractive")
    index_folder(s, fake_embedder)
    procs, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            script = SERVER.format(root=str(ROOT), seeds=str(s.seeds_dir), index=str(s.index_dir), url=chroma_server,
                                   port=port)
            procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=ROOT))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs):
            _wait(url, proc)
        first = [_top(u, "上海8月发布了什么？") for u in urls]
        assert first[0] == first[1] and "上海市加快推動" in str(first[0])
        for u in urls:
            r = httpx.post(f"{u}/v1/chat/completions", timeout=60, json={
                "model": "rag", "mode": "extractive", "messages": [{"role": "user", "content": "上海8月发布了什么？"}]})
            assert r.status_code == 200 and r.json()["citations"], r.text
        # a third process adds a document: both replicas see it at their next request
        (workdir / "seeds" / "new.txt").write_text("蚌埠市举办了第一届龙虾节。", encoding="utf-8")
        index_folder(s, fake_embedder)
        for u in urls:
            assert "蚌埠" in str(_top(u, "蚌埠 龙虾节")), u
        # and a rebuild (a new collection on the server, CURRENT switched)
        index_folder(s, fake_embedder, rebuild=True)
        after = [_top(u, "蚌埠 龙虾节") for u in urls]
        assert after[0] == after[1] and "蚌埠" in str(after[0])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
