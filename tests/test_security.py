"""Issue 10: the attacks and failures a hostile-but-fair tester found, each
replayed against a real server (uvicorn on a loopback port, the real
Assistant over real Chroma, a fake embedder for speed), raw HTTP, the Gradio
client, or the real CLI in a subprocess."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from rag.assistant import Assistant
from rag.indexer import index_folder
from rag.settings import Settings
from rag.store import ChunkStore
from rag.types import UserError
from tests.conftest import ROOT, SEED, FakeEmbedder
from tests.test_server import live_server

SHANGHAI_ZH = "上海8月发布了什么？"
SECRET = "zanzibar-quokka-7731 treasury passphrase"


def make_settings(base: Path, **kw) -> Settings:
    kw.setdefault("llm", "extractive")
    kw.setdefault("model_dir", base / "no-models")  # mode "llm" falls back instead of loading a model
    return Settings(seeds_dir=base / "seeds", index_dir=base / "index", **kw)


@pytest.fixture
def base(tmp_path) -> Path:
    (tmp_path / "seeds").mkdir()
    shutil.copy(SEED, tmp_path / "seeds" / SEED.name)
    return tmp_path


@pytest.fixture
def real(base):
    """The real Assistant (fake embedder) over an indexed copy of the article."""
    a = Assistant(make_settings(base), FakeEmbedder())
    a.index()
    return a


@pytest.fixture
def served(real):
    """The real app (API + page) on a loopback port."""
    from rag.server import create_app

    with live_server(create_app(real, real.settings)) as url:
        yield url, real


def search_texts(url: str, query: str, k: int = 10) -> list[dict]:
    r = httpx.post(url + "/api/search", json={"query": query, "k": k}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def gradio_call(url: str, api: str, data: list) -> list[dict]:
    """Gradio's documented raw HTTP API: POST /gradio_api/call/<api>, then read its event stream."""
    r = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=60)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    events = []
    with httpx.stream("GET", f"{url}/gradio_api/call/{api}/{event_id}", timeout=120) as resp:
        name = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append({"event": name, "data": line.split(":", 1)[1].strip()})
                if name in ("complete", "error"):
                    break
    return events


# ----------------------------------------------------------------- 1. the upload reads server files


def test_upload_event_cannot_name_a_server_file(served, tmp_path):
    url, assistant = served
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(f"# Private\n\n{SECRET}\n", "utf-8")
    payload = [[{"path": str(secret), "meta": {"_type": "gradio.FileData"}, "orig_name": "secret.txt"}]]
    events = gradio_call(url, "upload", payload)
    assert events and events[-1]["event"] in ("complete", "error"), events
    assert "Added" not in json.dumps(events)
    seeds = assistant.settings.seeds_dir
    assert not any(SECRET in p.read_text("utf-8", "replace") for p in seeds.iterdir() if p.is_file())
    assert not any("zanzibar" in h["text"] for h in search_texts(url, SECRET))


def test_gradio_client_can_still_upload_through_the_page(served, tmp_path):
    from gradio_client import Client, handle_file

    url, assistant = served
    note = tmp_path / "heron.md"
    note.write_text("# 蓝鹭机器人博览会\n\n蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办。\n", "utf-8")
    status, msg, _ = Client(url + "/", verbose=False).predict([handle_file(str(note))], api_name="/upload")
    assert "**Added** `heron.md`" in msg, msg
    assert any(h["source"] == "heron.md" for h in search_texts(url, "蓝鹭机器人博览会在哪里举办？"))


def test_uploaded_bytes_accepts_only_what_the_upload_route_received(tmp_path, monkeypatch):
    from gradio import processing_utils

    from ui.app import uploaded_bytes

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    data = b"# a\n\nsome text\n"
    folder = tmp_path / "gradio" / processing_utils.hash_bytes(data)
    folder.mkdir(parents=True)
    (folder / "a.md").write_bytes(data)

    class Blocks:
        upload_file_set = {str(folder / "a.md")}

    assert uploaded_bytes(folder / "a.md", Blocks) == data
    (folder / "b.md").write_bytes(data)  # in the folder with the right hash, but never uploaded
    with pytest.raises(UserError, match="not uploaded"):
        uploaded_bytes(folder / "b.md", Blocks)
    outside = tmp_path / "secret.txt"
    outside.write_bytes(data)
    Blocks.upload_file_set.add(str(outside))
    with pytest.raises(UserError, match="not uploaded"):
        uploaded_bytes(outside, Blocks)
    (folder / "a.md").write_bytes(b"replaced afterwards")
    with pytest.raises(UserError, match="changed"):
        uploaded_bytes(folder / "a.md", Blocks)


# ----------------------------------------------------------------- 2. symlinks


def test_symlinks_in_the_documents_folder_are_not_followed(base, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text(f"root:x:0:0:{SECRET}\n", "utf-8")
    seeds = base / "seeds"
    (seeds / "link.txt").symlink_to(outside / "passwd.txt")
    (seeds / "linked-dir").symlink_to(outside, target_is_directory=True)
    a = Assistant(make_settings(base), FakeEmbedder())
    report = a.index()
    assert sorted(report.skipped) == ["link.txt: symbolic link, not followed", "linked-dir/: symbolic link, not followed"]
    assert "symbolic link" in report.summary() and not report.errors
    assert set(a.searcher.keyword.source_counts()) == {SEED.name}
    assert not any("zanzibar" in h.chunk.text for h in a.search("root:x:0:0", 10))
    with pytest.raises(UserError):
        a.original_text("link.txt")


def test_cli_index_names_the_skipped_link(base, tmp_path):
    (tmp_path / "passwd.txt").write_text("root:x:0:0\n", "utf-8")
    (base / "seeds" / "link.txt").symlink_to(tmp_path / "passwd.txt")
    out = run_cli(["index"], base)
    assert out.returncode == 0, out.stderr
    assert "skipped: link.txt: symbolic link, not followed" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


# ----------------------------------------------------------------- 3. indexing never freezes search


class GatedEmbedder(FakeEmbedder):
    """Embeds passages only while `gate` is open, so a test can hold a build mid-way."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def embed_passages(self, texts, batch_callback=None):
        self.waiting.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().embed_passages(texts)


def test_search_answers_while_an_upload_is_indexing(base):
    from gradio_client import Client, handle_file

    from rag.server import create_app

    emb = GatedEmbedder()
    a = Assistant(make_settings(base), emb)
    a.index()
    note = base / "upload" / "heron.md"
    note.parent.mkdir()
    note.write_text("# 蓝鹭机器人博览会\n\n蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办。\n", "utf-8")
    with live_server(create_app(a, a.settings)) as url:
        emb.gate.clear()
        emb.waiting.clear()
        job = Client(url + "/", verbose=False).submit([handle_file(str(note))], api_name="/upload")
        try:
            assert emb.waiting.wait(60), "the upload never started embedding"
            # the build is held mid-way: search and chat still answer, from the live build
            for _ in range(3):
                r = httpx.post(url + "/api/search", json={"query": "蓝鹭机器人博览会", "k": 5}, timeout=10)
                assert r.status_code == 200 and all(h["source"] != "heron.md" for h in r.json()["hits"])
                r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": SHANGHAI_ZH}]}, timeout=10)
                assert r.status_code == 200 and "上海" in r.json()["choices"][0]["message"]["content"]
        finally:
            emb.gate.set()
        status, msg, _ = job.result(timeout=120)
        assert "**Added** `heron.md`" in msg
        assert any(h["source"] == "heron.md" for h in search_texts(url, "蓝鹭机器人博览会在哪里举办？"))


def test_oversized_documents_are_refused_with_the_setting_named(base):
    big = "上海發布了行動方案。" * 40_000  # ~1.2 MB
    (base / "seeds" / "big.txt").write_text(big, "utf-8")
    a = Assistant(make_settings(base, doc_max_mb=1), FakeEmbedder())
    report = a.index()
    assert any("big.txt" in e and "RAG_DOC_MAX_MB" in e for e in report.errors), report.errors
    assert set(a.searcher.keyword.source_counts()) == {SEED.name}
    with pytest.raises(UserError, match="RAG_DOC_MAX_MB"):
        a.add_document("big2.txt", big.encode())
    assert not (base / "seeds" / "big2.txt").exists()


# ----------------------------------------------------------------- 4. bounded history


def test_long_history_is_a_clear_400(served):
    url, assistant = served
    long_turn = [{"role": "user", "content": "上" * 30_000}, {"role": "assistant", "content": "ok"}]
    r = httpx.post(url + "/v1/chat/completions",
                   json={"messages": long_turn + [{"role": "user", "content": SHANGHAI_ZH}]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "history_too_long", r.text
    many = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 40
    r = httpx.post(url + "/v1/chat/completions", json={"messages": many + [{"role": "user", "content": SHANGHAI_ZH}]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "history_too_long", r.text
    huge = [{"role": "user", "content": "x" * 1_000_000}, {"role": "assistant", "content": "a"}]
    r = httpx.post(url + "/v1/chat/completions", json={"messages": huge + [{"role": "user", "content": "q"}]}, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text


def test_long_history_on_the_page_is_an_error_reply(served):
    from gradio_client import Client

    url, assistant = served
    history = [{"role": "user", "content": [{"type": "text", "text": "上" * 30_000}]},
               {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
    chat, _, _ = Client(url + "/", verbose=False).predict(SHANGHAI_ZH, history, "auto", 5, api_name="/chat")
    from ui.app import message_text

    reply = message_text(chat[-1]["content"])
    assert reply.startswith("**Error:**") and "RAG_HISTORY_MAX_CHARS" in reply, reply


def test_history_bounds_in_the_python_api(real):
    with pytest.raises(UserError, match="RAG_HISTORY_MAX_TURNS"):
        real.ask(SHANGHAI_ZH, history=[("q", "a")] * 21)
    with pytest.raises(UserError, match="RAG_HISTORY_MAX_CHARS"):
        real.ask(SHANGHAI_ZH, history=[("上" * 20_001, "a")])
    assert not real.ask(SHANGHAI_ZH, history=[("上海在做什么？", "a")] * 20).refused


# ----------------------------------------------------------------- 5. citations after an edit


def test_offsets_and_headings_follow_an_edit_above_unchanged_chunks(base, tmp_path):
    doc = base / "seeds" / "note.md"
    doc.write_text("# 苏州\n\n第一段讲苏州的工厂。\n\n## 杭州\n\n第二段讲杭州的园区。\n", "utf-8")
    a = Assistant(make_settings(base), FakeEmbedder())
    a.index()
    doc.write_text("新加的一行在最上面。\n\n# 苏州新章\n\n第一段讲苏州的工厂。\n\n## 杭州\n\n第二段讲杭州的园区。\n", "utf-8")
    report = a.index()
    assert report.updated >= 2, report.summary()
    fresh = tmp_path / "fresh"
    shutil.copytree(base / "seeds", fresh / "seeds")
    index_folder(Settings(seeds_dir=fresh / "seeds", index_dir=fresh / "index"), FakeEmbedder())

    def spans(index_dir):
        return sorted((c.id, c.start, c.end, c.heading, c.ordinal) for c in ChunkStore.open(index_dir).all_chunks()
                      if c.source == "note.md")

    assert spans(base / "index") == spans(fresh / "index")
    original = doc.read_text("utf-8")
    for h in a.search("第一段讲苏州的工厂", 10):
        if h.chunk.source == "note.md":
            assert original[h.chunk.start:h.chunk.end] == h.chunk.text
    assert any(h.chunk.heading == "苏州新章" for h in a.search("第一段讲苏州的工厂", 10))


# ----------------------------------------------------------------- 6. malformed input, disk, index, names, reloads, hosts

BAD_BODIES = [
    b'{"messages": [{"role": "user", "content": "q"}], "k": NaN}',
    b'{"messages": [{"role": "user", "content": "q"}], "k": Infinity}',
    b'{"messages": [{"role": "user", "content": "q"}], "k": 1e400}',
    b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "stream": true}',
    b'{"messages": [{"role": "user", "content": "q"}], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"messages": [{"role": "user", "content": "q"}], "x": ' + b"[" * 50 + b"]" * 50 + b"}",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=["nan", "infinity", "1e400", "surrogate", "surrogate-stream", "deep", "nested-50"])
def test_malformed_chat_bodies_are_400(served, body):
    url, _ = served
    r = httpx.post(url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] and "Traceback" not in r.text


@pytest.mark.parametrize("body", [b'{"query": "q", "k": NaN}', b'{"query": "q", "k": 1e400}', b'{"query": "\\udfff"}'])
def test_malformed_search_bodies_are_400(served, body):
    url, _ = served
    r = httpx.post(url + "/api/search", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text


FAKE_CLI = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import rag.embedmodel
    from tests.conftest import FakeEmbedder
    rag.embedmodel.load_embedder = lambda settings: FakeEmbedder()  # the real CLI, a fast embedder
    from rag.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli_cmd(args: list) -> list:
    return [sys.executable, "-c", FAKE_CLI.format(root=str(ROOT)), *args]


def _cli_env(base: Path) -> dict:
    env = dict(os.environ, RAG_SEEDS_DIR=str(base / "seeds"), RAG_INDEX_DIR=str(base / "index"),
               RAG_LLM="extractive", RAG_MODEL_DIR=str(base / "no-models"), PYTHONUNBUFFERED="1")
    env.pop("RAG_API_KEY", None)
    return env


def run_cli(args: list, base: Path, *, input: bytes | None = None, wrap: list | None = None):
    """`rag ARGS` in a subprocess (optionally inside `wrap`, e.g. a private mount namespace)."""
    cmd = _cli_cmd(args)
    if wrap:
        cmd = [*wrap, *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, env=_cli_env(base), input=input, capture_output=True, timeout=300)
    proc.stdout, proc.stderr = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    return proc


def test_cli_question_that_is_not_utf8(real):
    base = real.settings.seeds_dir.parent
    out = run_cli(["ask", b"\xff\xfe\xe4\xb8 what?"], base)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not valid text" in out.stderr and "Traceback" not in out.stderr
    chat = run_cli(["chat"], base, input=b"\xff\xfe bad line\n" + SHANGHAI_ZH.encode() + b"\n\n")
    assert chat.returncode == 0 and "Traceback" not in chat.stderr + chat.stdout, chat.stderr
    assert "not valid text" in chat.stdout and "上海" in chat.stdout


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare (private mount namespace)")


def in_namespace(script: str) -> list:
    """Run the command after `script` (mounts) in a private mount namespace: nothing leaks out."""
    return ["unshare", "-m", "sh", "-c", script + ' && exec "$@"', "sh"]


@needs_mount
def test_full_disk_is_a_clear_error_and_loses_nothing(real):
    """The index on a full tmpfs: `rag index` and `rag ask` say so in one line;
    once space is freed, everything indexed before still answers."""
    base = real.settings.seeds_dir.parent
    (base / "seeds" / "big.txt").write_text("".join(f"第{i}条：上海发布了第{i}号行动方案。\n" for i in range(60_000)), "utf-8")
    (base / "full").mkdir()
    cli = shlex.join(_cli_cmd([]))
    full = base / "full"

    def step(name: str, args: str) -> str:
        return f'{cli} {args} > "{base}/{name}.out" 2>&1; echo $? > "{base}/{name}.rc"'

    script = " && ".join([
        f'used=$(du -sk "{base}/index" | cut -f1)',
        f'mount -t tmpfs -o size=$((used + 4096))k tmpfs "{full}"',
        f'cp -a "{base}/index/." "{full}/"',
        f'{{ dd if=/dev/zero of="{full}/filler" bs=64k 2>/dev/null; truncate -s -256K "{full}/filler"; }}',
        step("index", "index"),
        step("ask-full", f'ask --json "{SHANGHAI_ZH}"'),
        f'rm "{full}/filler"',
        step("ask", f'ask --json "{SHANGHAI_ZH}"'),
    ])
    subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, timeout=300,
                   env=dict(_cli_env(base), RAG_INDEX_DIR=str(full)))

    def result(name: str) -> tuple[str, str]:
        return (base / f"{name}.rc").read_text().strip(), (base / f"{name}.out").read_text("utf-8", "replace")

    rc, out = result("index")
    assert rc != "0" and "Traceback" not in out, out[-3000:]
    assert "cannot write the index" in out and ("No space left" in out or "MB free on its disk" in out), out[-2000:]
    rc, out = result("ask-full")
    assert "Traceback" not in out and (rc == "0" or "disk full" in out), out[-3000:]
    rc, out = result("ask")
    assert rc == "0", out[-3000:]
    assert "上海" in json.loads(out)["answer"]  # what was indexed before still answers


def test_full_disk_on_upload_is_a_clear_error(real, monkeypatch):
    import errno

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(UserError, match="No space left"):
        real.add_document("note.md", "# 合肥\n\n合肥市设立了量子计算产业园。\n".encode())
    monkeypatch.undo()
    assert sorted(p.name for p in real.settings.seeds_dir.iterdir()) == [SEED.name]


@needs_mount
def test_read_only_index_can_be_searched_but_not_written(real):
    base = real.settings.seeds_dir.parent
    ro = in_namespace(f'mount --bind "{base}/index" "{base}/index" && mount -o remount,ro,bind "{base}/index"')
    ask = run_cli(["ask", "--json", SHANGHAI_ZH], base, wrap=ro)
    assert ask.returncode == 0, ask.stderr[-3000:]
    assert "上海" in json.loads(ask.stdout)["answer"]
    index = run_cli(["index"], base, wrap=ro)
    assert index.returncode == 2 and "read-only" in index.stderr, index.stderr[-3000:]
    assert "Traceback" not in index.stderr


def test_upload_with_an_existing_name_never_replaces_the_document(real):
    first = "# 合肥\n\n合肥市在2025年设立了量子计算产业园。\n".encode()
    second = "# 宁波\n\n宁波市发布了港口机器人计划。\n".encode()
    assert real.add_document("note.md", first).saved_as == "note.md"
    report = real.add_document("note.md", second)
    assert report.saved_as == "note-2.md"
    seeds = real.settings.seeds_dir
    assert (seeds / "note.md").read_bytes() == first and (seeds / "note-2.md").read_bytes() == second
    assert real.search("合肥量子计算产业园", 1)[0].chunk.source == "note.md"
    assert real.search("宁波港口机器人", 1)[0].chunk.source == "note-2.md"
    with pytest.raises(UserError, match="already in the documents folder as note-2.md"):
        real.add_document("note.md", second)


def test_page_says_where_a_same_name_upload_went(served, tmp_path):
    from gradio_client import Client, handle_file

    url, assistant = served
    clash = tmp_path / SEED.name
    clash.write_text("# 另一篇\n\n这是另一篇同名文章，讲宁波港口。\n", "utf-8")
    _, msg, _ = Client(url + "/", verbose=False).predict([handle_file(str(clash))], api_name="/upload")
    stem = SEED.name[: -len(".txt")]
    assert f"saved as `{stem}-2.txt`" in msg, msg
    assert (assistant.settings.seeds_dir / SEED.name).read_bytes() == SEED.read_bytes()


INDEX_IN_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeEmbedder
    from rag.settings import Settings
    from rag.indexer import index_folder
    print(index_folder(Settings(seeds_dir={seeds!r}, index_dir={index!r}), FakeEmbedder(), rebuild={rebuild}).summary())
    """
)


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "rebuild"])
def test_server_sees_an_index_run_from_another_process(served, rebuild):
    url, assistant = served
    assert not any(h["source"] == "heron.md" for h in search_texts(url, "蓝鹭机器人博览会"))
    seeds = assistant.settings.seeds_dir
    (seeds / "heron.md").write_text("# 蓝鹭机器人博览会\n\n蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办。\n", "utf-8")
    script = INDEX_IN_ANOTHER_PROCESS.format(root=str(ROOT), seeds=str(seeds), index=str(assistant.settings.index_dir),
                                             rebuild=rebuild)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, timeout=300)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(h["source"] == "heron.md" for h in search_texts(url, "蓝鹭机器人博览会在哪里举办？")):
            break
        time.sleep(0.3)
    else:
        pytest.fail("the server never saw the new build")
    assert httpx.get(url + "/api/status", timeout=30).json()["documents"] == 2


def test_only_our_own_host_names_are_served(real):
    from rag.server import create_app

    with live_server(create_app(real, real.settings.model_copy(update={"allowed_hosts": "rag.example.org"}))) as url:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "rag.example.org", f"[::1]:{port}"):
            assert httpx.get(url + "/api/status", headers={"Host": host}, timeout=30).status_code == 200, host
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", ""):
            r = httpx.get(url + "/api/status", headers={"Host": host}, timeout=30)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", host
            assert httpx.get(url + "/", headers={"Host": host}, timeout=30).status_code == 400
    with live_server(create_app(real, real.settings.model_copy(update={"allowed_hosts": "*"}))) as url:
        assert httpx.get(url + "/api/status", headers={"Host": "anything.example"}, timeout=30).status_code == 200


def test_concurrent_opens_of_one_index_never_see_a_half_started_chroma_client(workdir, fake_embedder):
    """Requests right after a reload open the new build's client from several threads at
    once; Chroma registers a client before starting it, without a lock."""
    import threading

    from rag.settings import Settings
    from rag.store import ChunkStore, forget_open_clients
    from rag.assistant import Assistant

    s = Settings(seeds_dir=workdir / "seeds", index_dir=workdir / "index", llm="extractive")
    Assistant(s, fake_embedder).index()
    errors: list[BaseException] = []

    def count(barrier):
        try:
            barrier.wait()
            ChunkStore.open(s.index_dir, fake_embedder.name).collection.count()
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    for _ in range(15):
        forget_open_clients()
        barrier = threading.Barrier(6)
        threads = [threading.Thread(target=count, args=(barrier,)) for _ in range(5)]
        threads.append(threading.Thread(target=lambda: (barrier.wait(), forget_open_clients())))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
