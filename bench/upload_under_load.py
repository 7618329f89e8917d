"""Search and chat latency while a large upload is indexing (issue 10).

    python bench/upload_under_load.py                    # real embedding model, ~9.9 MB upload
    python bench/upload_under_load.py --fake-embedder    # hashed-bigram embedder (labelled as such)
    python bench/upload_under_load.py --mb 2 --requests 40
    python bench/upload_under_load.py --busy-seconds 600 # clients measure the first 10 minutes only

Starts a server on a free loopback port over a temporary copy of the article
(`rag serve`, or with --fake-embedder the same app around the tests' fake
embedder), measures search (/api/search) and chat (/v1/chat/completions,
extractive) latency idle, then uploads one generated document of --mb MB
through the page's upload API (gradio_client, as the browser does) and
measures the same requests, one search client and one chat client in
closed loops, until the upload's build is done. Then checks that a sentence
found only in the new document is searchable. Prints p50/p95 of each phase
and the ratio under load / idle; not a test: the numbers depend on the
machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_e271bcc5b97e4740.txt"
MARKER = "蓝鹭机器人博览会每年十月在挪威特罗姆瑟举办，展出了四十二台水下无人机。"
SEARCHES = ["上海8月发布了什么？", "What did Shanghai announce in August?", "全國首個市級人工智能管理機構在哪裡？"]
CHATS = ["上海8月发布了什么？", "What did Zhejiang do in May?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_document(path: Path, mb: float) -> None:
    """~mb MB of text: the article's paragraphs numbered over and over (so
    every chunk is distinct), with MARKER once in the middle."""
    paras = [p.strip() for p in SEED.read_text("utf-8").split("\n") if p.strip()]
    target = int(mb * 1e6)
    out, size, i = [], 0, 0
    while size < target:
        p = f"第{i}段（第{i // len(paras)}版）：{paras[i % len(paras)]}\n"
        out.append(p)
        size += len(p.encode())
        i += 1
    out.insert(len(out) // 2, MARKER + "\n")
    path.write_text("".join(out), "utf-8")


def serve_fake(base: Path, port: int) -> None:
    """--serve-fake: the real app and Assistant around the tests' fake embedder."""
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from rag.assistant import Assistant
    from rag.server import create_app
    from rag.settings import Settings
    from tests.conftest import FakeEmbedder

    s = Settings(seeds_dir=base / "seeds", index_dir=base / "index", llm="extractive", port=port)
    a = Assistant(s, FakeEmbedder())
    a.index()
    uvicorn.run(create_app(a, s), host="127.0.0.1", port=port, log_level="warning")


def start(base: Path, fake: bool, log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, RAG_SEEDS_DIR=str(base / "seeds"), RAG_INDEX_DIR=str(base / "index"),
               RAG_LLM="extractive", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("RAG_API_KEY", None)
    if fake:
        cmd = [sys.executable, __file__, "--serve-fake", str(base), "--port", str(port)]
    else:
        subprocess.run([sys.executable, "-m", "rag.cli", "index"], cwd=ROOT, env=env, check=True, stdout=log, stderr=log)
        cmd = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/api/status", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def loop(url: str, kind: str, stop: threading.Event, times: list[float], errors: list[str], limit: int | None) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=600) as c:
        i = 0
        while not stop.is_set() and (limit is None or i < limit):
            t0 = time.perf_counter()
            if kind == "search":
                r = c.post("/api/search", json={"query": SEARCHES[i % len(SEARCHES)], "k": 5})
            else:
                r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": CHATS[i % len(CHATS)]}],
                                                         "mode": "extractive"})
            times.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
            i += 1


def phase(url: str, limit: int | None, stop: threading.Event) -> dict:
    res = {k: [] for k in ("search", "chat")}
    errors: list[str] = []
    threads = [threading.Thread(target=loop, args=(url, k, stop, res[k], errors, limit)) for k in res]
    for t in threads:
        t.start()
    return {"threads": threads, "times": res, "errors": errors}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def summary(times: list[float]) -> dict:
    return {"n": len(times), "p50_ms": round(pct(times, 0.5) * 1000, 1), "p95_ms": round(pct(times, 0.95) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1) if times else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=9.9, help="size of the uploaded document (the default cap is 10 MiB)")
    ap.add_argument("--requests", type=int, default=60, help="requests per client in the idle phase")
    ap.add_argument("--fake-embedder", action="store_true", help="hashed-bigram embedder instead of the real model")
    ap.add_argument("--busy-seconds", type=float, default=None,
                    help="stop the clients this long into the upload (default: when its build is done); "
                         "the upload still runs to the end and the new document is checked")
    ap.add_argument("--out", default="runs/upload_under_load.json")
    ap.add_argument("--serve-fake", metavar="BASE", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_fake:
        serve_fake(Path(args.serve_fake), args.port)
        return 0

    from gradio_client import Client, handle_file

    base = Path(tempfile.mkdtemp(prefix="rag-upload-bench-"))
    (base / "seeds").mkdir()
    shutil.copy(SEED, base / "seeds" / SEED.name)
    doc = base / "upload" / "big-upload.txt"
    doc.parent.mkdir()
    make_document(doc, args.mb)
    log = open(base / "server.log", "w")
    proc, url = start(base, args.fake_embedder, log)
    try:
        embedder = "fake hashed-bigram embedder (tests/conftest.py)" if args.fake_embedder else "multilingual-e5-small"
        print(f"server {url}, embedder: {embedder}, upload {doc.stat().st_size / 1e6:.2f} MB", flush=True)
        idle = phase(url, 3, threading.Event())  # warm-up
        for t in idle["threads"]:
            t.join()
        idle = phase(url, args.requests, threading.Event())
        for t in idle["threads"]:
            t.join()
        print("idle:", {k: summary(v) for k, v in idle["times"].items()}, flush=True)

        stop = threading.Event()
        upload: dict = {}

        def do_upload():
            t0 = time.perf_counter()
            try:
                upload["result"] = Client(url + "/", verbose=False).predict([handle_file(str(doc))], api_name="/upload")
            except Exception as exc:  # reported, not raised: the numbers are still printed
                upload["error"] = repr(exc)
            upload["seconds"] = time.perf_counter() - t0
            stop.set()

        uploader = threading.Thread(target=do_upload)
        uploader.start()
        busy_started = time.perf_counter()
        busy = phase(url, None, stop)
        if args.busy_seconds:
            uploader.join(args.busy_seconds)
            stop.set()
        for t in busy["threads"]:
            t.join()
        print("while indexing:", {k: summary(v) for k, v in busy["times"].items()}, flush=True)
        uploader.join()
        busy_seconds = (upload.get("seconds") if not args.busy_seconds
                        else min(args.busy_seconds, time.perf_counter() - busy_started))
        for t in busy["threads"]:
            t.join()
        import httpx

        hits = httpx.post(url + "/api/search", json={"query": MARKER, "k": 3}, timeout=600).json()["hits"]
        searchable = any(MARKER[:10] in h["text"] and h["source"] == doc.name for h in hits)
        status = httpx.get(url + "/api/status", timeout=60).json()
        result = {
            "embedder": embedder,
            "upload_mb": round(doc.stat().st_size / 1e6, 2),
            "upload_seconds": round(upload.get("seconds", 0), 1),
            "upload_message": (upload.get("result") or [None, upload.get("error")])[1],
            "measured_while_indexing_s": round(busy_seconds or 0, 1),
            "idle": {k: summary(v) for k, v in idle["times"].items()},
            "while_indexing": {k: summary(v) for k, v in busy["times"].items()},
            "errors": idle["errors"] + busy["errors"],
            "new_document_searchable_after_build": searchable,
            "status_after": status,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
        result["p95_ratio"] = {
            k: round(result["while_indexing"][k]["p95_ms"] / result["idle"][k]["p95_ms"], 2) for k in ("search", "chat")
        }
        out = ROOT / args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
        print(json.dumps(result, ensure_ascii=False, indent=1))
        ok = searchable and not result["errors"] and all(r <= 2 for r in result["p95_ratio"].values())
        print("OK" if ok else "NOT OK", f"(p95 ratios {result['p95_ratio']}, searchable={searchable})")
        if not searchable:
            print(f"server log kept: {log.name}")
        return 0 if ok else 1
    finally:
        from rag.procs import stop_process

        stop_process(proc)
        log.close()
        for p in (base / "seeds", base / "index", base / "upload"):
            shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
