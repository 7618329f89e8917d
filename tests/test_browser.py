"""The paths users run: `rag serve` in a subprocess, driven by real headless
Chromium (the page), the official `openai` client (/v1) and `gradio_client`.

Chromium is Debian's (`scripts/install-browser.sh`, called by `make test`),
driven by playwright-python through `executable_path` — no browser download.
Every request the page makes to anything but the server is blocked and
recorded, and each test asserts there were none (the page must work offline).
Screenshots go to artifacts/screenshots/.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_e271bcc5b97e4740.txt"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LLM_TIMEOUT_MS = 240_000  # a CPU LLM answer on a 2-core machine


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rag(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=env, **kw)


def _serve(base: Path, env: dict, ready_path: str = "/api/status", headers: dict | None = None):
    """Start `rag serve --port N`; return (process, url, log file) once it answers."""
    port = _free_port()
    log = open(base / f"serve-{port}.log", "w")
    proc = _rag(["serve", "--port", str(port)], env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"`rag serve` exited {proc.returncode}:\n{Path(log.name).read_text()[-3000:]}")
        try:
            if httpx.get(url + ready_path, timeout=2, headers=headers or {}).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(proc, log)
            pytest.fail("`rag serve` did not answer within 300 s")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()


def _env(base: Path, **extra) -> dict:
    env = dict(
        os.environ,
        RAG_SEEDS_DIR=str(base / "seeds"),
        RAG_INDEX_DIR=str(base / "index"),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    env.pop("RAG_API_KEY", None)
    env.update(extra)
    return env


def _require_models():
    from rag.embedmodel import is_prepared
    from rag.settings import Settings

    if not is_prepared(Settings()):
        _missing("embedding model not prepared (run `rag models prepare`)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rag index` then `rag serve --port N` over a copy of the seed article."""
    _require_models()
    base = tmp_path_factory.mktemp("served")
    (base / "seeds").mkdir()
    shutil.copy(SEED, base / "seeds" / SEED.name)
    env = _env(base)
    indexing = _rag(["index"], env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = indexing.communicate(timeout=600)
    assert indexing.returncode == 0, out
    proc, url, log = _serve(base, env)
    try:
        yield {"url": url, "seeds": base / "seeds", "base": base}
    finally:
        _stop(proc, log)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _missing("Debian chromium not installed (run scripts/install-browser.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh page on the server; requests leaving 127.0.0.1 are blocked and recorded."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.external_requests = []
    page.page_errors = []

    def gate(route):
        url = route.request.url
        if url.startswith(server["url"]) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            page.external_requests.append(url)
            route.abort()

    page.route("**/*", gate)
    page.on("pageerror", lambda exc: page.page_errors.append(str(exc)))
    page.goto(server["url"] + "/", wait_until="load")
    page.wait_for_selector("#question textarea", timeout=60_000)
    page.wait_for_function(
        "() => (document.querySelector('#index-status')?.innerText || '').includes('chunks')", timeout=60_000
    )
    yield page
    page.screenshot(path=str(SHOTS / f"{request.node.name}-end.png"), full_page=True)
    context.close()
    assert page.external_requests == [], f"page tried to reach the internet: {page.external_requests}"
    assert page.page_errors == [], page.page_errors


RECORD_STREAM = """
() => {
  window.__seen = [];
  const box = document.querySelector('#chatbot');
  const obs = new MutationObserver(() => {
    const bots = box.querySelectorAll('.message.bot');
    if (bots.length) window.__seen.push(bots[bots.length - 1].innerText);
  });
  obs.observe(box, {subtree: true, childList: true, characterData: true});
}
"""


def _ask(page, question: str) -> None:
    page.fill("#question textarea", question)
    page.keyboard.press("Enter")


def _last_bot(page):
    return page.locator("#chatbot .message.bot").last


def _source_rows(page):
    """Rows of the sources table that hold a citation (the grid also has hidden rows it measures with)."""
    return page.locator("#sources [role=row]:visible").filter(has_text=re.compile(r"\[\d+\]"))


def _set_mode(page, label_prefix: str) -> None:
    """Pick an answer mode in the (collapsed) settings area."""
    if not page.locator("#mode").is_visible():
        page.locator("#settings").get_by_text("Settings", exact=True).first.click()
    option = page.locator("#mode label").filter(has_text=re.compile(r"^\s*" + re.escape(label_prefix)))
    option.click()
    assert option.locator("input").is_checked()


@pytest.mark.browser
def test_chat_streams_and_citation_opens_passage(page, server):
    status = page.inner_text("#index-status")
    assert "1 document " in status and "multilingual-e5-small" in status, status
    llm_in_use = "llama-cpp" in status or "openai" in status
    page.evaluate(RECORD_STREAM)
    _ask(page, "What did Shanghai announce in August?")
    # the user's turn appears at once, then the answer grows
    page.wait_for_selector("#chatbot .message.user", timeout=10_000)
    link = page.locator('#chatbot .message.bot a[href^="#cite-"]').first
    if llm_in_use:
        page.wait_for_function("() => new Set((window.__seen || []).filter(t => t.trim().length > 1)).size >= 4", timeout=LLM_TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "chat-streaming.png"), full_page=True)
    link.wait_for(timeout=LLM_TIMEOUT_MS)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / "chat-answer.png"), full_page=True)
    answer = _last_bot(page).inner_text()
    assert "上海" in answer or "Shanghai" in answer, answer
    if llm_in_use:  # really streamed: shorter partial answers were on screen before the final one
        seen = [t.strip() for t in page.evaluate("window.__seen") if t.strip()]
        partial = {t for t in seen if len(t) < len(answer.strip())}
        assert len(partial) >= 2, seen[:20]

    # the sources panel lists the cited passages with scores
    rows = _source_rows(page)
    assert rows.count() >= 1
    first_row = rows.first.inner_text()
    assert SEED.name[:10] in first_row and re.search(r"\b\d+\.\d+\b", first_row), first_row

    # click the first citation marker in the answer
    n = re.search(r"\[(\d+)\]", link.inner_text()).group(1)
    link.click()
    page.wait_for_selector("#passage", state="visible", timeout=15_000)
    page.wait_for_function(
        "n => (document.querySelector('#passage-title')?.innerText || '').includes('[' + n + ']')", arg=n, timeout=15_000
    )
    title = page.inner_text("#passage-title")
    assert SEED.name in title, title
    passage = page.inner_text("#passage")
    assert "上海" in passage and "8月" in passage, passage[:500]
    # the cited span is highlighted inside more of the original text
    highlighted = page.locator("#passage .token.highlighted .text")
    assert highlighted.count() == 1
    cited = highlighted.first.inner_text()
    assert "上海" in cited and len(passage) > len(cited) + 100
    page.locator("#passage").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "chat-citation-open.png"), full_page=True)

    # follow-up in Chinese, extractive mode from the settings area
    _set_mode(page, "Extractive")
    _ask(page, "上海8月发布了什么？")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot a[href^=\"#cite-1-\"]').length > 0",
        timeout=LLM_TIMEOUT_MS,
    )
    assert "上海" in _last_bot(page).inner_text()
    page.screenshot(path=str(SHOTS / "chat-chinese-extractive.png"), full_page=True)

    # clear chat empties the conversation and the sources
    page.click("#clear")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .message').length === 0", timeout=10_000)
    assert _source_rows(page).count() == 0


@pytest.mark.browser
def test_upload_markdown_then_ask_about_it(page, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    note = "# 蓝鹭机器人博览会\n\n蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办。\n2025年的博览会展出了42台水下无人机。\n"
    page.set_input_files(
        "#upload input[type=file]",
        files=[{"name": "heron-fair.md", "mimeType": "text/markdown", "buffer": note.encode()}],
    )
    page.wait_for_timeout(500)
    page.click("#upload-btn")
    page.wait_for_function(
        "() => (document.querySelector('#upload-msg')?.innerText || '').includes('heron-fair.md')", timeout=180_000
    )
    msg = page.inner_text("#upload-msg")
    assert "Added" in msg and "Not added" not in msg, msg
    page.wait_for_function(
        "() => (document.querySelector('#index-status')?.innerText || '').includes('2 documents')", timeout=30_000
    )
    assert (server["seeds"] / "heron-fair.md").read_text("utf-8") == note
    page.screenshot(path=str(SHOTS / "upload-done.png"), full_page=True)

    _set_mode(page, "Extractive")
    _ask(page, "蓝鹭机器人博览会在哪里举办？")
    link = page.locator('#chatbot .message.bot a[href^="#cite-"]').first
    link.wait_for(timeout=LLM_TIMEOUT_MS)
    assert "特罗姆瑟" in _last_bot(page).inner_text()
    assert "heron-fair.md" in _source_rows(page).first.inner_text()
    link.click()
    page.wait_for_function(
        "() => (document.querySelector('#passage-title')?.innerText || '').includes('heron-fair.md')", timeout=15_000
    )
    page.screenshot(path=str(SHOTS / "upload-answer.png"), full_page=True)

    # a bad file: message on the page, index unchanged
    before = httpx.get(server["url"] + "/api/status").json()
    page.set_input_files(
        "#upload input[type=file]",
        files=[{"name": "blank.md", "mimeType": "text/markdown", "buffer": b"   \n\n"}],
    )
    page.wait_for_timeout(500)
    page.click("#upload-btn")
    page.wait_for_function(
        "() => (document.querySelector('#upload-msg')?.innerText || '').includes('blank.md')", timeout=60_000
    )
    assert "Not added" in page.inner_text("#upload-msg")
    after = httpx.get(server["url"] + "/api/status").json()
    assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"])
    assert not (server["seeds"] / "blank.md").exists()
    page.screenshot(path=str(SHOTS / "upload-error.png"), full_page=True)


# ----------------------------------------------------------------- the same server through its APIs

SHANGHAI_Q = "What did Shanghai announce in August?"


def test_openai_client_gets_cited_answers(server):
    from openai import OpenAI

    client = OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)
    assert [m.id for m in client.models.list().data] == ["rag-assistant"]
    resp = client.chat.completions.create(
        model="rag-assistant", messages=[{"role": "user", "content": SHANGHAI_Q}], extra_body={"mode": "extractive"}
    )
    text = resp.choices[0].message.content
    cites = resp.model_extra["citations"]
    assert cites and f"[{cites[0]['n']}]" in text
    original = (server["seeds"] / cites[0]["source"]).read_text("utf-8")
    assert "上海" in original[cites[0]["start"]:cites[0]["end"]]

    # streaming, in the server's default answer mode (the LLM when prepared)
    parts, final = [], None
    for chunk in client.chat.completions.create(
        model="rag-assistant", messages=[{"role": "user", "content": "上海8月发布了什么？"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.model_extra and "citations" in chunk.model_extra:
            final = chunk.model_extra
    assert final is not None and parts
    answer = final["rag"]["answer"]
    assert "上海" in answer and final["citations"]
    assert all(f"[{c['n']}]" in answer for c in final["citations"])


def test_search_api_on_the_real_index(server):
    r = httpx.post(server["url"] + "/api/search", json={"query": "上海8月发布了什么？", "k": 3}, timeout=60)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 3
    original = (server["seeds"] / hits[0]["source"]).read_text("utf-8")
    start, end = hits[0]["span"]
    assert "上海" in "".join(h["text"] for h in hits)
    assert 0 <= start < end <= len(original)
    assert_bad = httpx.post(server["url"] + "/api/search", json={"query": "x", "k": 0}, timeout=30)
    assert assert_bad.status_code == 400 and "k" in assert_bad.json()["error"]["message"]


def test_gradio_client_through_the_page_api(server):
    from gradio_client import Client

    client = Client(server["url"] + "/", verbose=False)
    chat, box, sources = client.predict("上海8月发布了什么？", [], "extractive", 5, api_name="/chat")
    from ui.app import message_text

    answer = message_text(chat[-1]["content"])
    assert "上海" in answer and "#cite-0-1" in answer
    assert sources["data"] and sources["data"][0][1] == SEED.name


def test_traversal_upload_name_stays_in_seeds(server):
    from gradio_client import Client

    url = server["url"]
    r = httpx.post(
        url + "/gradio_api/upload",
        files={"files": ("../../evil.md", "# 恶意\n\n这是一个测试文件。\n".encode(), "text/markdown")},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    fd = {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "../../evil.md"}
    base = server["base"]
    before = set(base.parent.rglob("*evil*"))
    status, msg, _ = Client(url + "/", verbose=False).predict([fd], api_name="/upload")
    new = set(base.parent.rglob("*evil*")) - before
    if "Not added" in msg:  # refused is fine ...
        assert not new
    else:  # ... and so is a safe name inside the documents folder
        assert new and all(p.resolve().parent == server["seeds"].resolve() for p in new), (msg, new)


def test_api_key_guards_v1_api_and_page(tmp_path):
    """RAG_API_KEY set: no/wrong bearer -> 401 JSON; right one -> 200; the page asks for it."""
    _require_models()
    (tmp_path / "seeds").mkdir()
    shutil.copy(SEED, tmp_path / "seeds" / SEED.name)
    key = "test-key-123"
    ok = {"Authorization": f"Bearer {key}"}
    proc, url, log = _serve(tmp_path, _env(tmp_path, RAG_API_KEY=key), ready_path="/v1/models", headers=ok)
    try:
        for path, method in (("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/api/search", "POST")):
            for headers in ({}, {"Authorization": "Bearer nope"}):
                r = httpx.request(method, url + path, json={"query": "x"}, headers=headers, timeout=30)
                assert r.status_code == 401, (path, r.text)
                assert "API key" in r.json()["error"]["message"]
        assert httpx.get(url + "/v1/models", headers=ok, timeout=30).status_code == 200
        assert httpx.get(url + "/config", timeout=30).status_code == 401  # the page needs the key too
    finally:
        _stop(proc, log)
