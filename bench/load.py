"""Load check for the HTTP API: N chat requests, C at a time, through /v1.

    python bench/load.py                      # starts `rag serve` on a free port itself
    python bench/load.py --url http://127.0.0.1:7860 --mode extractive
    python bench/load.py --requests 200 --concurrency 8 --stream

Uses the official `openai` client (no retries, so every failure is counted).
Prints the number of errors (and the first few), p50/p95/max latency and
throughput; exits 1 when any request failed. Bounded: at most --requests
requests, and it stops sending after --max-seconds. Only loopback URLs are
accepted. Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = [
    "What did Shanghai announce in August?",
    "上海8月发布了什么？",
    "全國首個市級人工智能管理機構在哪裡？",
    "How large was the global industrial AI market in 2024?",
    "北京5月印发了什么方案？",
    "What did Zhejiang do in May?",
]


def loopback_only(url: str) -> str:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise SystemExit(f"error: --url must point at this machine (127.0.0.1/localhost/::1), not {host!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: `rag serve` exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/v1/models", timeout=2, headers=_auth_headers()).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"error: server did not come up within {timeout:.0f}s")


def _auth_headers() -> dict:
    key = os.environ.get("RAG_API_KEY", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def load_questions(path: Path | None) -> list[str]:
    if path and path.exists():
        qs = [json.loads(line)["question"] for line in path.read_text("utf-8").splitlines() if line.strip()]
        if qs:
            return qs
    return DEFAULT_QUESTIONS


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    i = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[i]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (loopback only); default: start `rag serve` on a free port")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--mode", choices=["auto", "extractive", "llm"], default="auto", help="answer mode sent with each request")
    ap.add_argument("--stream", action="store_true", help="use streaming responses (latency = until the last chunk)")
    ap.add_argument("--questions", type=Path, default=ROOT / "evals" / "questions.jsonl")
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop sending new requests after this")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 64:
        raise SystemExit("error: --requests must be 1..10000 and --concurrency 1..64")

    from openai import OpenAI

    proc = None
    if args.url:
        url = loopback_only(args.url.rstrip("/"))
    else:
        print("starting `rag serve` …", flush=True)
        proc, url = start_server(args.startup_timeout)
    questions = load_questions(args.questions)
    client = OpenAI(
        base_url=url + "/v1",
        api_key=os.environ.get("RAG_API_KEY") or "unused",
        max_retries=0,
        timeout=args.timeout,
    )
    extra = {} if args.mode == "auto" else {"mode": args.mode}
    deadline = time.monotonic() + args.max_seconds
    latencies: list[float] = []
    errors: list[str] = []
    skipped = 0
    no_citation = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal skipped, no_citation
        if time.monotonic() > deadline:
            with lock:
                skipped += 1
            return
        q = questions[i % len(questions)]
        t0 = time.perf_counter()
        try:
            if args.stream:
                text, cites = "", None
                for chunk in client.chat.completions.create(
                    model="rag-assistant", messages=[{"role": "user", "content": q}], stream=True, extra_body=extra
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        text += chunk.choices[0].delta.content
                    if chunk.model_extra and "citations" in chunk.model_extra:
                        cites = chunk.model_extra["citations"]
                        text = (chunk.model_extra.get("rag") or {}).get("answer", text)
                if cites is None:
                    raise RuntimeError("stream ended without the final chunk")
            else:
                resp = client.chat.completions.create(
                    model="rag-assistant", messages=[{"role": "user", "content": q}], extra_body=extra
                )
                text = resp.choices[0].message.content or ""
                cites = resp.model_extra.get("citations")
            if not text.strip():
                raise RuntimeError("empty answer")
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if not cites:
                    no_citation += 1
                done = len(latencies) + len(errors)
                if done % 20 == 0:
                    print(f"  {done}/{args.requests} done ({len(errors)} errors)", file=sys.stderr, flush=True)
        except Exception as exc:  # counted, reported, never retried
            with lock:
                errors.append(f"#{i} {q!r}: {type(exc).__name__}: {str(exc)[:200]}")

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(one, range(args.requests)))
    finally:
        wall = time.perf_counter() - started
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    result = {
        "url": url,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "mode": args.mode,
        "stream": args.stream,
        "ok": len(latencies),
        "errors": len(errors),
        "not_sent_after_deadline": skipped,
        "answers_without_citations": no_citation,
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies), 3) if latencies else None,
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "wall_s": round(wall, 1),
        "throughput_rps": round(len(latencies) / wall, 2) if wall else None,
    }
    print(
        f"{result['ok']}/{args.requests} ok, errors: {len(errors)}, not sent: {skipped}, "
        f"p50 {result['p50_s']:.3f}s, p95 {result['p95_s']:.3f}s, max {result['max_s']}s, "
        f"{result['throughput_rps']} req/s over {result['wall_s']}s "
        f"(concurrency {args.concurrency}, mode {args.mode}{', stream' if args.stream else ''})"
    )
    for e in errors[:10]:
        print("  error:", e)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 1 if errors or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
