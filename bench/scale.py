"""Scale benchmark: this project's index and search at N chunks, side by side with the
textbook LlamaIndex + Chroma dense retriever built over the same chunks and vectors.

    .venv/bin/python bench/scale.py --sizes 1000,10000,100000 [--json FILE] [--workdir DIR]

For each N it generates a synthetic Chinese corpus (words drawn from jieba's dictionary by
their frequency, 50 paragraphs of at most ~280 characters per file, one chunk each), then,
each step in a fresh process: builds both indexes, re-indexes with nothing changed, adds
one 10-chunk file, starts a process and answers one question (cold start), and times warm
searches (p50/p95) and peak RSS. N = 1,000 uses the real embedding model (and also times
embedding the same texts alone, before and after the build, the mean of the two); larger N use a fast fake embedder (hashed character
bigrams, labelled "fake") so that the pipeline, not the model, is timed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

CHUNKS_PER_FILE = 50
FAKE_DIM = 384
REAL_MAX_N = 1000  # sizes up to this use the real model


# --------------------------------------------------------------------------- corpus
def _words(rng: np.random.Generator):
    import jieba

    words, freqs = [], []
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            w, freq, *_ = line.split()
            if len(w) >= 2 and all("\u4e00" <= ch <= "\u9fff" for ch in w):
                words.append(w)
                freqs.append(int(freq))
    order = np.argsort(-np.asarray(freqs))[:60000]
    words = [words[i] for i in order]
    p = np.asarray(freqs, dtype=np.float64)[order] ** 0.75  # flatter than raw frequency
    return words, np.cumsum(p / p.sum())


def _draw(rng, words, cdf, k: int) -> list[str]:
    idx = np.minimum(np.searchsorted(cdf, rng.random(k)), len(words) - 1)
    return [words[i] for i in idx]


def paragraph(rng, words, p) -> str:
    out, n = [], 0
    target = int(rng.integers(120, 260))
    while n < target:
        k = int(rng.integers(6, 16))
        ws = _draw(rng, words, p, k)
        cut = int(rng.integers(2, k - 2))
        s = "".join(ws[:cut]) + "，" + "".join(ws[cut:]) + ("。" if rng.random() < 0.85 else "；")
        if n + len(s) > 290:
            break
        out.append(s)
        n += len(s)
    if not out:
        out.append("".join(_draw(rng, words, p, 6)) + "。")
    return "".join(out)


def make_corpus(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n paragraphs in n/50 files; returns a few paragraphs to draw questions from.
    A complete corpus from an earlier run (same n and seed) is reused."""
    done = folder / ".complete.json"
    if done.exists() and json.loads(done.read_text())["key"] == [n, seed]:
        return json.loads(done.read_text())["samples"]
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    words, p = _words(rng)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    files = (n + CHUNKS_PER_FILE - 1) // CHUNKS_PER_FILE
    for fi in range(files):
        k = min(CHUNKS_PER_FILE, n - fi * CHUNKS_PER_FILE)
        paras = [paragraph(rng, words, p) for _ in range(k)]
        if fi % max(1, files // 60) == 0:
            samples.append(paras[int(rng.integers(0, k))])
        (folder / f"doc{fi:05d}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    done.write_text(json.dumps({"key": [n, seed], "samples": samples}, ensure_ascii=False))
    return samples


def questions_from(samples: list[str], n: int = 40, seed: int = 1) -> list[str]:
    """Questions made of a few words of a paragraph, as a user would type them."""
    import jieba

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ws = [w for w in jieba.lcut(samples[i % len(samples)]) if len(w) >= 2]
        pick = sorted(rng.choice(len(ws), size=min(3, len(ws)), replace=False))
        out.append("".join(ws[j] for j in pick) + "是什么？")
    return out


def english_questions(n: int = 40) -> list[str]:
    """English questions of the eval sets (`evals/*/questions.jsonl`), the first n in file
    order: real questions whose words the CC-CEDICT bridge reads into the corpus's Chinese
    words (jieba's dictionary), so their search pays the bridge's costs at this size."""
    out: list[str] = []
    for path in sorted((ROOT / "evals").glob("*/questions.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            q = json.loads(line) if line.strip() else {}
            if q.get("lang") == "en":
                out.append(q["question"])
    return out[:n]


# --------------------------------------------------------------------------- embedders
class HashEmbedder:
    """Fake embedder: hashed character bigrams, L2-normalised, vectorised (no model)."""

    name = "fake-hash-bigram-384"
    dim = FAKE_DIM

    def _vec(self, text: str) -> np.ndarray:
        a = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        v = np.zeros(self.dim, dtype=np.float32)
        if len(a) >= 2:
            h = ((a[:-1] * np.uint64(1000003) + a[1:]) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
            v = np.bincount((h % np.uint64(self.dim)).astype(np.int64), minlength=self.dim).astype(np.float32)
        nrm = np.linalg.norm(v)
        return v / nrm if nrm else v + 1.0 / np.sqrt(self.dim)

    def embed_queries(self, texts):
        return np.stack([self._vec(t) for t in texts])

    def embed_passages(self, texts, batch_callback=None):
        out = np.stack([self._vec(t) for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)
        if batch_callback is not None:
            batch_callback(len(texts))
        return out


def embedder_for(kind: str):
    if kind == "fake":
        return HashEmbedder()
    from rag.embedmodel import load_embedder
    from rag.settings import Settings

    return load_embedder(Settings())


class TimedEmbedder:
    """Counts the seconds spent embedding passages (to separate them from the pipeline)."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.name, self.dim = inner.name, inner.dim

    def embed_queries(self, texts):
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts, batch_callback=None):
        t = time.perf_counter()
        try:
            return self.inner.embed_passages(texts, batch_callback=batch_callback)
        finally:
            self.seconds += time.perf_counter() - t


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(corpus: Path, index: Path):
    from rag.settings import Settings

    return Settings(seeds_dir=corpus, index_dir=index, llm="extractive")


def chunks_of(corpus: Path):
    """The project's own chunks of the corpus (the textbook side indexes the same texts)."""
    from rag.chunking import chunk_document
    from rag.ingest import discover, load_document
    from rag.normalize import clean_document

    out = []
    for p in discover(corpus):
        doc = load_document(p, corpus)
        out.extend(chunk_document(doc, 300, clean_document(doc.text, markdown=doc.is_markdown)))
    return out


# --------------------------------------------------------------------------- textbook side
def textbook_embedding(emb):
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    class Wrapped(BaseEmbedding):
        _emb = PrivateAttr()

        def __init__(self, inner, **kw):
            super().__init__(model_name=inner.name, **kw)
            self._emb = inner

        def _get_query_embedding(self, query):
            return self._emb.embed_queries([query])[0].tolist()

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text):
            return self._emb.embed_passages([text])[0].tolist()

        def _get_text_embeddings(self, texts):
            return self._emb.embed_passages(texts).tolist()

    return Wrapped(emb)


def textbook_retriever(index_dir: Path, emb):
    import chromadb
    from chromadb.config import Settings as CS
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = chromadb.PersistentClient(path=str(index_dir), settings=CS(anonymized_telemetry=False))
    vs = ChromaVectorStore(chroma_collection=client.get_collection("textbook"))
    index = VectorStoreIndex.from_vector_store(vs, embed_model=textbook_embedding(emb))
    return index.as_retriever(similarity_top_k=5)


# --------------------------------------------------------------------------- child steps
def child(step: str, a: dict) -> dict:
    corpus, index, kind = Path(a["corpus"]), Path(a["index"]), a["embedder"]
    qs = a.get("questions") or []
    if step == "pure_embed":
        emb = embedder_for(kind)
        texts = [c.text for c in chunks_of(corpus)]
        emb.embed_passages(texts[:8])  # warm the model up, as the build's first batch does
        t = time.perf_counter()
        emb.embed_passages(texts)
        return {"seconds": time.perf_counter() - t}
    if step in ("build", "noop", "add"):
        from rag.indexer import index_folder

        emb = TimedEmbedder(embedder_for(kind))
        if step != "noop":
            import chromadb  # noqa: F401  imported before the clock starts, as on the textbook side
        if kind == "real":
            emb.inner.embed_passages(["热身"])
        t = time.perf_counter()
        r = index_folder(settings_for(corpus, index), emb)
        return {"seconds": time.perf_counter() - t, "embed_seconds": emb.seconds, "chunks": r.total_chunks,
                "embedded": r.embedded, "rss_mb": rss_mb()}
    if step == "tb_build":
        import chromadb
        from chromadb.config import Settings as CS
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.vector_stores.chroma import ChromaVectorStore

        emb = embedder_for(kind)
        if kind == "real":
            emb.embed_passages(["热身"])
        t = time.perf_counter()
        nodes = [TextNode(id_=c.id, text=c.text, metadata={"source": c.source},
                          excluded_embed_metadata_keys=["source"]) for c in chunks_of(corpus)]
        client = chromadb.PersistentClient(path=str(index), settings=CS(anonymized_telemetry=False))
        col = client.get_or_create_collection("textbook", metadata={"hnsw:space": "cosine"})
        storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=col))
        VectorStoreIndex(nodes, storage_context=storage, embed_model=textbook_embedding(emb))
        return {"seconds": time.perf_counter() - t, "chunks": col.count(), "rss_mb": rss_mb()}
    if step == "cold":
        from rag.assistant import Assistant

        ans = Assistant(settings_for(corpus, index), embedder_for(kind)).ask(qs[0], mode="extractive")
        return {"done": time.time(), "citations": len(ans.citations), "refused": ans.refused}
    if step == "tb_cold":
        nodes = textbook_retriever(index, embedder_for(kind)).retrieve(qs[0])
        return {"done": time.time(), "hits": len(nodes)}
    if step == "search":
        from rag.assistant import Assistant

        assistant = Assistant(settings_for(corpus, index), embedder_for(kind))
        for q in qs[:3]:
            assistant.ask(q, mode="extractive")  # warm, and the answer path is in the RSS
        times = []
        for q in qs:
            t = time.perf_counter()
            assistant.search(q, k=5)
            times.append(time.perf_counter() - t)
        en = a.get("en_questions") or []
        for q in en[:3]:
            assistant.search(q, k=5)  # warm: the bridge's dictionary and the index's readings
        times_en = []
        for q in en:
            t = time.perf_counter()
            assistant.search(q, k=5)
            times_en.append(time.perf_counter() - t)
        return {"times": times, "times_en": times_en, "rss_mb": rss_mb()}
    if step == "tb_search":
        retriever = textbook_retriever(index, embedder_for(kind))
        for q in qs[:3]:
            retriever.retrieve(q)
        times = []
        for q in qs:
            t = time.perf_counter()
            retriever.retrieve(q)
            times.append(time.perf_counter() - t)
        return {"times": times, "rss_mb": rss_mb()}
    raise SystemExit(f"unknown step {step}")


def run_child(step: str, **a) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", step, json.dumps(a, ensure_ascii=False)],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    if "done" in out:
        out["cold_start"] = out["done"] - t0
    return out


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def bench_size(n: int, work: Path, log, corpus_only: bool = False) -> dict:
    kind = "real" if n <= REAL_MAX_N else "fake"
    base = work / f"n{n}"
    corpus, ours, tb = base / "corpus", base / "index", base / "textbook"
    shutil.rmtree(ours, ignore_errors=True)
    shutil.rmtree(tb, ignore_errors=True)
    (corpus / "added.txt").unlink(missing_ok=True)
    t = time.perf_counter()
    qs = questions_from(make_corpus(corpus, n))
    if corpus_only:
        return {"n": n}
    log(f"[{n}] corpus of {n} chunks in {len(list(corpus.iterdir()))} files ({time.perf_counter() - t:.0f} s), embedder {kind}")
    common = {"corpus": str(corpus), "embedder": kind, "questions": qs, "en_questions": english_questions()}
    res: dict = {"n": n, "embedder": kind}
    pure: list[float] = []
    if kind == "real":
        pure.append(run_child("pure_embed", index=str(ours), **common)["seconds"])
        log(f"[{n}] pure embedding {pure[-1]:.1f} s")
    b = run_child("build", index=str(ours), **common)
    assert b["chunks"] == n, f"the corpus chunked into {b['chunks']} chunks, not {n}"
    res.update(build_s=b["seconds"], build_embed_s=b["embed_seconds"], build_rss_mb=b["rss_mb"])
    log(f"[{n}] build {b['seconds']:.1f} s (embedding {b['embed_seconds']:.1f} s)")
    if kind == "real":
        # once before and once after the build: on a shared machine the load drifts over the
        # minutes a real-model run takes, and the mean of the two brackets the build's stretch
        pure.append(run_child("pure_embed", index=str(ours), **common)["seconds"])
        log(f"[{n}] pure embedding again {pure[-1]:.1f} s")
        res.update(pure_embed_s=statistics.mean(pure), pure_embed_runs_s=pure)
    tbb = run_child("tb_build", index=str(tb), **common)
    res.update(textbook_build_s=tbb["seconds"])
    log(f"[{n}] textbook build {tbb['seconds']:.1f} s")
    if kind == "real":
        res["build_over_pure_embed"] = res["build_s"] / res["pure_embed_s"]
    res["build_over_textbook"] = res["build_s"] / res["textbook_build_s"]
    noop = run_child("noop", index=str(ours), **common)
    assert noop["embedded"] == 0
    res.update(noop_reindex_s=noop["seconds"], noop_reindex_process_s=noop["wall"])
    log(f"[{n}] no-op reindex {noop['seconds']:.2f} s in-process, {noop['wall']:.1f} s as a process")
    rng = np.random.default_rng(99)
    words, p = _words(rng)
    (corpus / "added.txt").write_text("\n\n".join(paragraph(rng, words, p) for _ in range(10)) + "\n", encoding="utf-8")
    add = run_child("add", index=str(ours), **common)
    assert add["embedded"] == 10, add
    res.update(add_file_s=add["seconds"], add_file_embed_s=add["embed_seconds"],
               add_file_over_embed_s=add["seconds"] - add["embed_seconds"])
    log(f"[{n}] add a 10-chunk file {add['seconds']:.2f} s (embedding {add['embed_seconds']:.2f} s)")
    (corpus / "added.txt").unlink()
    run_child("noop", index=str(ours), **common)  # back to n chunks
    cold, tcold = [], []
    for _ in range(3):  # alternate, so both see the same machine load
        cold.append(run_child("cold", index=str(ours), **common)["cold_start"])
        tcold.append(run_child("tb_cold", index=str(tb), **common)["cold_start"])
    res.update(cold_start_s=statistics.median(cold), textbook_cold_start_s=statistics.median(tcold))
    log(f"[{n}] cold start to first answer {res['cold_start_s']:.2f} s, textbook to first retrieval {res['textbook_cold_start_s']:.2f} s")
    s = run_child("search", index=str(ours), **common)
    ts = run_child("tb_search", index=str(tb), **common)
    res.update(search_p50_ms=pct(s["times"], 50), search_p95_ms=pct(s["times"], 95),
               textbook_search_p50_ms=pct(ts["times"], 50), textbook_search_p95_ms=pct(ts["times"], 95),
               search_en_p50_ms=pct(s["times_en"], 50), search_en_p95_ms=pct(s["times_en"], 95),
               rss_mb=s["rss_mb"], textbook_rss_mb=ts["rss_mb"], disk_mb=du_mb(ours), textbook_disk_mb=du_mb(tb))
    log(f"[{n}] search p50/p95 {res['search_p50_ms']:.1f}/{res['search_p95_ms']:.1f} ms (textbook dense "
        f"{res['textbook_search_p50_ms']:.1f}/{res['textbook_search_p95_ms']:.1f}); RSS {res['rss_mb']:.0f} MB "
        f"(textbook {res['textbook_rss_mb']:.0f}); English questions p50/p95 {res['search_en_p50_ms']:.1f}/"
        f"{res['search_en_p95_ms']:.1f} ms; disk {res['disk_mb']:.0f} MB (textbook {res['textbook_disk_mb']:.0f})")
    res["load_average"] = os.getloadavg()[0]
    res["date"] = time.strftime("%Y-%m-%d")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--json", default=None, help="write the figures here (one object per size)")
    ap.add_argument("--workdir", default="/tmp/rag-scale")
    ap.add_argument("--corpus-only", action="store_true", help="only generate the corpora (reused by later runs)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from rag.settings import offline_environment

    offline_environment()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]))))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        results.append(bench_size(n, work, lambda m: print(m, flush=True), args.corpus_only))
        if args.corpus_only:
            continue
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    keys = ["n", "embedder", "build_s", "textbook_build_s", "pure_embed_s", "noop_reindex_s", "add_file_s",
            "cold_start_s", "textbook_cold_start_s", "search_p50_ms", "search_p95_ms", "textbook_search_p50_ms",
            "rss_mb", "textbook_rss_mb", "disk_mb", "textbook_disk_mb", "load_average"]
    print("| " + " | ".join(keys) + " |")
    for r in results:
        print("| " + " | ".join(str(r.get(k, "–")) for k in keys) + " |")


if __name__ == "__main__":
    main()
