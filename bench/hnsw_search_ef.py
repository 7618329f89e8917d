"""Chroma's HNSW search breadth (ef_search): recall, latency and repeatability of the
searcher's 100 dense candidates.

    .venv/bin/python bench/hnsw_search_ef.py [--sizes 10000,100000] [--efs 100,200,400] [--json FILE]

For each size it builds a Chroma collection the way `rag index` does (cosine space given as
metadata; vectors of bench/scale.py's synthetic Chinese corpus, from its fake embedder of
hashed character bigrams, so the graph, not the model, is timed) and adds 500 more as an
upload would (Chroma persists its graph every 1,000 rows: these stay in its log and are
inserted again, on several threads, whenever the collection is opened), then for each breadth
opens it in two fresh processes and asks the same questions (bench/scale.py's) for 100
results in each: recall against the exact top 100 (numpy over every vector), search p50/p95,
and the share of questions whose 100 ids come back the same in both processes (the
searcher min-max normalises over that list, so a different tail moves scores). rag/store.py
sets SEARCH_EF from this.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = 100
UPLOAD = 500
NAME = "bench_ef"


def _client(path: Path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def build(work: Path, n: int) -> tuple[np.ndarray, list[str]]:
    from bench.scale import HashEmbedder, make_corpus, questions_from

    samples = make_corpus(work / "corpus", n + UPLOAD)
    texts = [p for f in sorted((work / "corpus").glob("*.txt"))
             for p in f.read_text(encoding="utf-8").split("\n\n") if p.strip()][:n + UPLOAD]
    emb = HashEmbedder()
    vecs = emb.embed_passages(texts)
    col = _client(work / "chroma").get_or_create_collection(NAME, metadata={"hnsw:space": "cosine"},
                                                           embedding_function=None)
    for i in range(0, n, 5000):
        col.add(ids=[str(j) for j in range(i, min(n, i + 5000))], embeddings=vecs[i:min(n, i + 5000)])
    col.add(ids=[str(j) for j in range(n, len(texts))], embeddings=vecs[n:])
    questions = questions_from(samples, 100)
    return vecs, questions


def child(work: Path, ef: int, questions: list[str]) -> dict:
    from bench.scale import HashEmbedder

    col = _client(work / "chroma").get_collection(NAME)
    col.modify(configuration={"hnsw": {"ef_search": ef}})
    col = _client(work / "chroma").get_collection(NAME)
    qv = HashEmbedder().embed_queries(questions)
    col.query(query_embeddings=qv[:1], n_results=RESULTS, include=["distances"])  # loads the graph
    ids, times = [], []
    for v in qv:
        t = time.perf_counter()
        r = col.query(query_embeddings=v.reshape(1, -1), n_results=RESULTS, include=["distances"])
        times.append(time.perf_counter() - t)
        ids.append(r["ids"][0])
    return {"ids": ids, "times": times}


def run_child(work: Path, ef: int, qfile: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(work), "--ef", str(ef), "--questions", str(qfile)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(n: int, efs: list[int], root: Path) -> list[dict]:
    from bench.scale import HashEmbedder

    work = root / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    vecs, questions = build(work, n)
    qfile = work / "questions.json"
    qfile.write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    qv = HashEmbedder().embed_queries(questions)
    # the exact 100th cosine of each question: a result at least that close is a right one
    # (the fake vectors tie often, so the exact top 100 as a set is not unique)
    sims = [vecs @ v for v in qv]
    floor = [np.sort(s)[-RESULTS] - 1e-6 for s in sims]
    rows = []
    for ef in efs:
        a, b = run_child(work, ef, qfile), run_child(work, ef, qfile)
        recall = statistics.mean(sum(s[int(j)] >= f for j in i) / RESULTS for s, f, i in zip(sims, floor, a["ids"]))
        same = statistics.mean(x == y for x, y in zip(a["ids"], b["ids"]))
        t = sorted(a["times"] + b["times"])
        row = {"chunks": n, "ef_search": ef, "recall@100": round(float(recall), 4), "same_in_two_processes": round(same, 3),
               "p50_ms": round(1000 * t[len(t) // 2], 2), "p95_ms": round(1000 * t[int(len(t) * 0.95)], 2)}
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--efs", default="100,200,400")
    p.add_argument("--json", default="")
    p.add_argument("--workdir", default="")
    p.add_argument("--child", default="")
    p.add_argument("--ef", type=int, default=0)
    p.add_argument("--questions", default="")
    a = p.parse_args()
    if a.child:
        questions = json.loads(Path(a.questions).read_text(encoding="utf-8"))
        print(json.dumps(child(Path(a.child), a.ef, questions)))
        return
    efs = [int(x) for x in a.efs.split(",")]
    with tempfile.TemporaryDirectory(prefix="rag-ef-") as tmp:
        root = Path(a.workdir or tmp)
        rows = [r for n in (int(x) for x in a.sizes.split(",")) for r in bench_size(n, efs, root)]
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
