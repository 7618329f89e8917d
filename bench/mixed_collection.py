"""The eval sets asked over one mixed collection instead of each over its own corpus.

    .venv/bin/python bench/mixed_collection.py [--mode extractive|llm] [--sets a,b] [--out DIR]

A user's collection is rarely one article or one reading-comprehension corpus: it mixes
documents on unrelated topics. This copies every corpus folder named in evals/sets.toml
(the seed article, cmrc-train's and drcd's passages: simplified and traditional) into one
temporary folder, writes a manifest whose sets all point at it, and runs `rag eval` on it
(its own index cache under the temporary folder, so runs/.index-cache is not touched).
Compare the table with `rag eval`'s per-corpus one: the questions are the same, only the
other documents in the index differ.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from rag.evaluate import corpus_name, load_manifest
    from rag.ingest import discover

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default=str(ROOT / "evals" / "sets.toml"))
    p.add_argument("--mode", default="extractive", choices=("extractive", "llm"))
    p.add_argument("--sets", default=None, help="comma-separated set names, as rag eval takes them (default: all)")
    p.add_argument("--out", default="", help="folder for rag eval's results (default: in the temporary folder)")
    args = p.parse_args(argv)

    specs = load_manifest(Path(args.manifest))
    with tempfile.TemporaryDirectory(prefix="rag-mixed-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        folders = list(dict.fromkeys(s.corpus.resolve() for s in specs))
        copied = 0
        for folder in folders:
            # each corpus's files under its name: file names may repeat across corpora
            tag = corpus_name(folder)
            for f in discover(folder):
                shutil.copy2(f, corpus / f"{tag}-{f.relative_to(folder).as_posix().replace('/', '-')}")
                copied += 1
        lines = []
        for s in specs:
            lines += ["[[set]]", f'name = "{s.name}"', f'questions = "{s.questions.resolve().as_posix()}"',
                      'corpus = "corpus"', ""]
        manifest = Path(tmp) / "sets.toml"
        manifest.write_text("\n".join(lines), encoding="utf-8")
        print(f"{copied} documents from {len(folders)} corpora in one collection", flush=True)
        out = args.out or str(Path(tmp) / "out")
        cmd = [sys.executable, "-m", "rag.cli", "eval", "--mode", args.mode, "--manifest", str(manifest),
               "--index-cache", str(Path(tmp) / "cache"), "--out", out]
        if args.sets is not None:
            cmd += ["--sets", args.sets]  # rag eval's own selection (and its message for a wrong name)
        return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
