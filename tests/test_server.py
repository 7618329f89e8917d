"""Fast tests of the HTTP API and the chat page's logic, against a fake assistant.

The fake has the `Assistant` interface (ask/stream/search/add_document/status/
original_text) over an in-memory keyword index, so these tests check the server
and UI code (routing, SSE format, errors, auth, citations, uploads, concurrency)
without models. The real server with the real assistant is driven in
tests/test_browser.py and the `slow` test at the end of this file.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag.settings import Settings
from rag.types import Answer, Chunk, Citation, Hit, UserError

# ----------------------------------------------------------------- the fake

SHANGHAI = (
    "上海的行動\n"
    "8月，上海發布了《上海市加快推進人工智能+製造行動方案》，提出到2027年打造100家標桿工廠。\n"
    "浙江在5月出台了相關政策。\n"
)


class FakeReport:
    def __init__(self, source: str, chunks: int):
        self.source, self.chunks = source, chunks

    def summary(self) -> str:
        return f"indexed {self.source}: {self.chunks} chunks"


def _terms(text: str) -> set[str]:
    text = text.lower()
    words = set(re.findall(r"[a-z0-9]+", text))
    han = re.findall(r"[\u4e00-\u9fff]", text)
    return words | {a + b for a, b in zip(han, han[1:])} | set(han)


ALIASES = {"shanghai": "上海", "august": "8月", "zhejiang": "浙江"}


class FakeAssistant:
    """Same interface as rag.Assistant; keyword search over lines of the seeds."""

    def __init__(self, seeds_dir: Path, *, delay: float = 0.0, upload_max_mb: float = 10.0):
        self.seeds_dir = Path(seeds_dir)
        self.seeds_dir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.upload_max_mb = upload_max_mb
        self.docs: dict[str, str] = {}
        self.chunks: list[Chunk] = []
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        for path in sorted(self.seeds_dir.glob("*")):
            if path.suffix in (".txt", ".md"):
                self._index(path.name, path.read_text("utf-8"))

    def _index(self, source: str, text: str) -> int:
        self.docs[source] = text
        n = 0
        pos = 0
        for line in text.splitlines(keepends=True):
            stripped = line.strip()
            if stripped:
                start = pos + line.index(stripped)
                self.chunks.append(
                    Chunk(id=f"{source}:{n}", source=source, text=stripped, start=start, end=start + len(stripped), ordinal=n)
                )
                n += 1
            pos += len(line)
        return n

    # -- interface
    def search(self, question: str, k: int = 5) -> list[Hit]:
        q = question.lower()
        for en, zh in ALIASES.items():
            if en in q:
                q += " " + zh
        qt = _terms(q)
        scored = []
        for c in self.chunks:
            overlap = len(qt & _terms(c.text))
            if overlap:
                scored.append((overlap / (len(qt) or 1), c))
        scored.sort(key=lambda x: -x[0])
        return [Hit(chunk=c, score=s, rank=i + 1) for i, (s, c) in enumerate(scored[:k])]

    def _answer(self, question, k, history, mode) -> Answer:
        if not question.strip():
            raise UserError("The question is empty.")
        self.calls.append({"question": question, "k": k, "history": history, "mode": mode})
        hits = self.search(question, k or 5)
        if not hits:
            return Answer(text="The documents do not say.", refused=True, question=question, hits=[])
        top = hits[0]
        cite = Citation(n=1, source=top.chunk.source, text=top.chunk.text, start=top.chunk.start,
                        end=top.chunk.end, chunk_id=top.chunk.id, score=top.score)
        return Answer(text=f"{top.chunk.text} [1]", refused=False, citations=[cite], question=question,
                      standalone_question=question, mode=mode or "extractive", hits=hits)

    def ask(self, question, *, k=None, history=None, mode=None) -> Answer:
        if self.delay:
            time.sleep(self.delay)
        return self._answer(question, k, history, mode)

    def stream(self, question, *, k=None, history=None, mode=None):
        answer = self._answer(question, k, history, mode)
        words = re.findall(r"\S+\s*", answer.text) or [answer.text]
        for w in words:
            if self.delay:
                time.sleep(self.delay / len(words))
            yield w
        yield answer

    def add_document(self, filename: str, data: bytes) -> FakeReport:
        name = Path(str(filename).replace("\\", "/")).name.lstrip(".")
        name = re.sub(r"[^\w.\-]+", "_", name)
        if Path(name).suffix.lower() not in (".txt", ".md"):
            raise UserError(f"{filename!r}: only .txt and .md files can be added.")
        if len(data) > self.upload_max_mb * 1024 * 1024:
            raise UserError(f"{filename!r} is larger than {self.upload_max_mb} MB.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{filename!r} is not UTF-8 text.")
        if not text.strip():
            raise UserError(f"{filename!r} is empty.")
        with self.lock:
            (self.seeds_dir / name).write_text(text, "utf-8")
            n = self._index(name, text)
        return FakeReport(name, n)

    def status(self) -> dict:
        return {"documents": len(self.docs), "chunks": len(self.chunks), "embed_model": "fake", "llm": "extractive"}

    def original_text(self, source: str) -> str:
        return self.docs[source]


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def seeds(tmp_path) -> Path:
    d = tmp_path / "seeds"
    d.mkdir()
    (d / "shanghai.txt").write_text(SHANGHAI, "utf-8")
    return d


def make_settings(seeds: Path, **kw) -> Settings:
    # starlette's TestClient sends "Host: testserver", which the server's
    # DNS-rebinding guard refuses unless it is listed
    kw.setdefault("allowed_hosts", "testserver")
    return Settings(seeds_dir=seeds, index_dir=seeds.parent / "index", **kw)


@pytest.fixture
def fake(seeds) -> FakeAssistant:
    return FakeAssistant(seeds)


@pytest.fixture
def client(fake, seeds):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    app = create_app(fake, make_settings(seeds), with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app):
    """A real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SHANGHAI_Q = "What did Shanghai announce in August?"


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def assert_json_error(resp, status: int):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in resp.text
    return body


# ----------------------------------------------------------------- /v1 and /api


def test_models_lists_one_model(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["rag-assistant"]


def test_chat_completion_carries_markers_and_citations(client, fake):
    r = client.post("/v1/chat/completions", json={"model": "rag-assistant", "messages": [{"role": "user", "content": SHANGHAI_Q}], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    content = body["choices"][0]["message"]["content"]
    assert "[1]" in content and "上海" in content
    cite = body["citations"][0]
    assert cite["n"] == 1 and cite["source"] == "shanghai.txt"
    assert fake.docs["shanghai.txt"][cite["start"]:cite["end"]] == cite["text"]
    assert body["rag"]["refused"] is False
    assert fake.calls[-1]["k"] == 3 and fake.calls[-1]["mode"] is None


def test_chat_history_and_mode_are_passed(client, fake):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What did Shanghai announce in August?"},
        {"role": "assistant", "content": "A plan [1]"},
        {"role": "user", "content": [{"type": "text", "text": "And Zhejiang?"}]},
    ]
    r = client.post("/v1/chat/completions", json={"messages": msgs, "mode": "extractive"})
    assert r.status_code == 200, r.text
    call = fake.calls[-1]
    assert call["question"] == "And Zhejiang?"
    assert call["history"] == [("What did Shanghai announce in August?", "A plan [1]")]
    assert call["mode"] == "extractive"


def test_streaming_sse_chunks_add_up_to_the_answer(client):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": SHANGHAI_Q}], "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert text == last["rag"]["answer"] and "[1]" in text
    assert last["citations"][0]["source"] == "shanghai.txt"
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 1  # really streamed


def test_streaming_final_text_is_authoritative(seeds):
    """When the final Answer differs from the deltas, the last chunk says so."""
    from fastapi.testclient import TestClient

    from rag.server import create_app

    class Renumbering(FakeAssistant):
        def stream(self, question, **kw):
            yield "Plan [3]"
            yield Answer(text="Plan [1]", refused=False, question=question)

    app = create_app(Renumbering(seeds), make_settings(seeds), with_ui=False)
    with TestClient(app) as c:
        events = sse_events(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}], "stream": True}).text)
    last = events[-2]
    assert last["rag"]["answer"] == "Plan [1]" and last["rag"]["replaced"] is True


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": "   "}]},
        {"messages": [{"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "wizard", "content": "hello"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "user", "content": "q"}], "k": 0},
        {"messages": [{"role": "user", "content": "q"}], "k": "five"},
        {"messages": [{"role": "user", "content": "q"}], "k": 2.5},
        {"messages": [{"role": "user", "content": "q"}], "k": 10_000},
        {"messages": [{"role": "user", "content": "q"}], "mode": "magic"},
        {"messages": [{"role": "user", "content": "q"}], "stream": "yes"},
    ],
)
def test_bad_chat_requests_get_400_json(client, payload):
    assert_json_error(client.post("/v1/chat/completions", json=payload), 400)


def test_invalid_json_and_non_object_bodies(client):
    assert_json_error(client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_json_error(client.post("/v1/chat/completions", content=b"[1, 2]", headers={"content-type": "application/json"}), 400)
    assert_json_error(client.post("/api/search", content=b"", headers={"content-type": "application/json"}), 400)
    assert_json_error(client.post("/api/search", content="\xff".encode("latin-1")), 400)


def test_unknown_route_and_wrong_method_are_json(client):
    assert_json_error(client.get("/v1/nothing-here"), 404)
    assert_json_error(client.get("/v1/chat/completions"), 405)


def test_user_error_is_400_and_crash_is_500_without_traceback(seeds):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    class Broken(FakeAssistant):
        def ask(self, question, **kw):
            if question == "user":
                raise UserError("No index yet: run `rag index` first.")
            raise RuntimeError("secret internal detail")

        def stream(self, question, **kw):
            raise UserError("No index yet: run `rag index` first.")

    app = create_app(Broken(seeds), make_settings(seeds), with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        body = assert_json_error(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "user"}]}), 400)
        assert "rag index" in body["error"]["message"]
        body = assert_json_error(c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "user"}], "stream": True}), 400)
        assert "rag index" in body["error"]["message"]
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "boom"}]})
        body = assert_json_error(r, 500)
        assert "secret internal detail" not in r.text and "RuntimeError" in body["error"]["message"]


def test_search_returns_hits_with_spans(client, fake):
    r = client.post("/api/search", json={"query": "上海 8月", "k": 2})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert 1 <= len(hits) <= 2
    top = hits[0]
    assert top["source"] == "shanghai.txt" and "上海" in top["text"]
    assert top["span"] == [top["start"], top["end"]]
    assert fake.docs[top["source"]][top["start"]:top["end"]] == top["text"]
    assert isinstance(top["score"], float)


@pytest.mark.parametrize("payload", [{}, {"query": ""}, {"query": 5}, {"query": "x", "k": 0}, {"query": "x", "k": "2"}, {"query": "x", "k": True}])
def test_bad_search_requests_get_400(client, payload):
    assert_json_error(client.post("/api/search", json=payload), 400)


def test_status_endpoint(client):
    assert client.get("/api/status").json()["documents"] == 1


def test_api_key_required_when_set(fake, seeds):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    app = create_app(fake, make_settings(seeds, api_key="s3cret"), with_ui=False)
    with TestClient(app) as c:
        body = {"messages": [{"role": "user", "content": SHANGHAI_Q}]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
            r = c.post("/v1/chat/completions", json=body, headers=headers)
            assert_json_error(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
        assert_json_error(c.get("/v1/models"), 401)
        assert_json_error(c.post("/api/search", json={"query": "上海"}), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/chat/completions", json=body, headers=ok).status_code == 200
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/api/search", json={"query": "上海"}, headers=ok).status_code == 200


# ----------------------------------------------------------------- real server: openai client, concurrency


def test_openai_client_against_live_server(fake, seeds):
    from openai import OpenAI

    from rag.server import create_app

    with live_server(create_app(fake, make_settings(seeds), with_ui=False)) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["rag-assistant"]
        resp = client.chat.completions.create(model="rag-assistant", messages=[{"role": "user", "content": SHANGHAI_Q}])
        text = resp.choices[0].message.content
        assert "[1]" in text
        cites = resp.model_extra["citations"]
        assert cites[0]["source"] == "shanghai.txt" and cites[0]["text"] in text

        stream = client.chat.completions.create(model="rag-assistant", messages=[{"role": "user", "content": "上海8月发布了什么？"}], stream=True, extra_body={"k": 2})
        parts, extras = [], []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.model_extra and chunk.model_extra.get("citations"):
                extras.append(chunk.model_extra)
        assert len(parts) > 1 and "[1]" in "".join(parts)
        assert extras and extras[-1]["citations"][0]["source"] == "shanghai.txt"
        assert fake.calls[-1]["k"] == 2

        from openai import BadRequestError

        with pytest.raises(BadRequestError):
            client.chat.completions.create(model="rag-assistant", messages=[{"role": "user", "content": ""}])


def test_api_serves_concurrent_requests(seeds):
    """8 requests at once take about as long as 1 (ratio, not wall time)."""
    from rag.server import create_app

    fake = FakeAssistant(seeds, delay=0.4)
    body = {"messages": [{"role": "user", "content": SHANGHAI_Q}]}
    with live_server(create_app(fake, make_settings(seeds), with_ui=False)) as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            t0 = time.perf_counter()
            assert c.post("/v1/chat/completions", json=body).status_code == 200
            one = time.perf_counter() - t0
        results = []

        def worker():
            with httpx.Client(base_url=url, timeout=30) as c:
                results.append(c.post("/v1/chat/completions", json=body).status_code)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        eight = time.perf_counter() - t0
    assert results == [200] * 8
    assert eight / one < 4, (eight, one)  # serialised would be ~8


# ----------------------------------------------------------------- the page's logic (no browser)


def test_linkify_roundtrip_and_only_known_numbers():
    from ui.app import linkify, unlinkify

    text = "Shanghai issued a plan [1], see also [2] and [7]."
    linked = linkify(text, 3, {1, 2})
    assert "(#cite-3-1)" in linked and "(#cite-3-2)" in linked and "#cite-3-7" not in linked
    assert unlinkify(linked) == text
    assert unlinkify(linked + "\n\n> Note: LLM not prepared") == text


def test_history_pairs_reads_gradio6_messages():
    from ui.app import history_pairs, linkify

    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "Q1"}]},
        {"role": "assistant", "content": [{"type": "text", "text": linkify("A1 [1]", 0, {1})}]},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
    assert history_pairs(msgs) == [("Q1", "A1 [1]"), ("Q2", "A2")]
    assert history_pairs(None) == []


def test_passage_context_highlights_exactly_the_span():
    from ui.app import passage_context

    original = "line one\n" + "x" * 500 + "\nTHE CITED SPAN\n" + "y" * 500 + "\nlast"
    start = original.index("THE CITED SPAN")
    before, cited, after = passage_context(original, start, start + len("THE CITED SPAN"), width=100)
    assert cited == "THE CITED SPAN"
    assert before.startswith("…") and after.endswith("…")
    assert original[:start].endswith(before.lstrip("…"))
    assert original[start + len(cited):].startswith(after.rstrip("…"))
    b, c, a = passage_context("short text", 0, 5)
    assert (b, c, a) == ("", "short", " text")


# ----------------------------------------------------------------- the page over a real server (gradio_client)


@pytest.fixture
def ui_server(seeds):
    from rag.server import create_app

    fake = FakeAssistant(seeds)
    with live_server(create_app(fake, make_settings(seeds))) as url:
        yield url, fake


def _last_assistant_text(chat: list) -> str:
    from ui.app import message_text

    return message_text(chat[-1]["content"])


def test_gradio_client_chat_and_upload(ui_server, tmp_path):
    from gradio_client import Client, handle_file

    url, fake = ui_server
    client = Client(url + "/", verbose=False)
    chat, box, sources = client.predict(SHANGHAI_Q, [], "extractive", 3, api_name="/chat")
    answer = _last_assistant_text(chat)
    assert "上海" in answer and "(#cite-0-1)" in answer
    assert box == ""
    assert sources["data"][0][0] == "[1]" and sources["data"][0][1] == "shanghai.txt"
    assert fake.calls[-1]["mode"] == "extractive" and fake.calls[-1]["k"] == 3

    # follow-up: the history reaches the assistant without the link markup
    client.predict("And Zhejiang?", chat, "auto", 5, api_name="/chat")
    assert fake.calls[-1]["history"][0][0] == SHANGHAI_Q
    assert "#cite" not in fake.calls[-1]["history"][0][1] and "[1]" in fake.calls[-1]["history"][0][1]
    assert fake.calls[-1]["mode"] is None

    note = tmp_path / "zebra.md"
    note.write_text("# Zebra council\n\nThe zebra council met in Oslo on 3 March.\n", "utf-8")
    status, msg, _ = client.predict([handle_file(str(note))], api_name="/upload")
    assert "**Added** `zebra.md`" in msg and "2 documents" in status
    chat, _, sources = client.predict("Where did the zebra council meet?", [], "auto", 3, api_name="/chat")
    assert "Oslo" in _last_assistant_text(chat) and sources["data"][0][1] == "zebra.md"


def _raw_upload(url: str, name: str, data: bytes) -> dict:
    r = httpx.post(url + "/gradio_api/upload", files={"files": (name, data, "text/plain")}, timeout=30)
    assert r.status_code == 200, r.text
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": name}


def test_upload_with_traversal_name_stays_in_seeds(ui_server, seeds):
    from gradio_client import Client

    url, fake = ui_server
    client = Client(url + "/", verbose=False)
    before = {p for p in seeds.parent.parent.rglob("*evil*")}
    status, msg, _ = client.predict([_raw_upload(url, "../../evil.md", b"# Evil\n\nThe quokka treaty.\n")], api_name="/upload")
    after = {p for p in seeds.parent.parent.rglob("*evil*")} - before
    assert after, msg  # it was accepted ...
    assert all(p.resolve().parent == seeds.resolve() for p in after), after  # ... and landed inside seeds/


def test_bad_upload_message_and_index_unchanged(ui_server):
    from gradio_client import Client

    url, fake = ui_server
    client = Client(url + "/", verbose=False)
    chunks_before = fake.status()["chunks"]
    status, msg, _ = client.predict([_raw_upload(url, "empty.md", b"   \n")], api_name="/upload")
    assert "**Not added** `empty.md`" in msg and "empty" in msg
    assert fake.status()["chunks"] == chunks_before and "1 document " in status
    assert not any(p.name == "empty.md" for p in fake.seeds_dir.iterdir())


def test_empty_question_is_not_sent(ui_server):
    from gradio_client import Client

    url, fake = ui_server
    chat, box, _ = Client(url + "/", verbose=False).predict("   ", [], "auto", 5, api_name="/chat")
    assert chat == [] and fake.calls == []


def test_gradio_queue_serves_eight_chats_at_once(seeds):
    """8 chats through the page's queue take about as long as 1 (ratio only)."""
    from gradio_client import Client

    from rag.server import create_app

    fake = FakeAssistant(seeds, delay=0.6)
    with live_server(create_app(fake, make_settings(seeds))) as url:
        clients = [Client(url + "/", verbose=False) for _ in range(8)]
        t0 = time.perf_counter()
        clients[0].predict(SHANGHAI_Q, [], "auto", 5, api_name="/chat")
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        jobs = [c.submit(SHANGHAI_Q, [], "auto", 5, api_name="/chat") for c in clients]
        results = [j.result(timeout=60) for j in jobs]
        eight = time.perf_counter() - t0
    assert all("上海" in _last_assistant_text(r[0]) for r in results)
    assert eight / one < 4, (eight, one)  # one at a time would be ~8


def test_page_assets_are_local(ui_server):
    url, _ = ui_server
    page = httpx.get(url + "/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    css = httpx.get(url + "/theme.css", timeout=30)
    assert css.status_code == 200
    assert "fonts.googleapis" not in css.text and "@import url(http" not in css.text
    assert not re.search(r"url\(['\"]?https?://", css.text)


def test_api_key_also_guards_the_page(seeds):
    from gradio_client import Client

    from rag.server import create_app

    fake = FakeAssistant(seeds)
    with live_server(create_app(fake, make_settings(seeds, api_key="k3y"))) as url:
        assert httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}).status_code == 401
        assert httpx.get(url + "/config").status_code == 401
        up = httpx.post(url + "/gradio_api/upload", files={"files": ("a.md", b"# a\n", "text/markdown")})
        assert up.status_code == 401
        assert not (seeds / "a.md").exists()
        with pytest.raises(Exception):
            Client(url + "/", verbose=False).predict(SHANGHAI_Q, [], "auto", 5, api_name="/chat")
        chat, _, _ = Client(url + "/", auth=("anyone", "k3y"), verbose=False).predict(SHANGHAI_Q, [], "auto", 5, api_name="/chat")
        assert "上海" in _last_assistant_text(chat)


def test_unknown_api_paths_are_json_even_with_the_page_mounted(ui_server):
    url, _ = ui_server
    body = assert_json_error(httpx.get(url + "/v1/nothing-here"), 404)
    assert body["error"]["code"] == "not_found"
    r = httpx.get(url + "/v1/chat/completions")
    assert_json_error(r, 405)
    assert r.headers["allow"] == "POST"
    assert_json_error(httpx.get(url + "/api/search"), 405)
    assert_json_error(httpx.delete(url + "/api/whatever"), 404)
    assert httpx.get(url + "/").status_code == 200  # the page is still there
