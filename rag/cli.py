"""Command line: `rag index | ask | chat | eval | models prepare | serve`.

User errors print one clear line and exit non-zero; internal errors stay loud.
"""
from __future__ import annotations

import argparse
import json
import sys

from rag.settings import offline_environment
from rag.types import Answer, UserError

EXIT_USER_ERROR = 2


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _settings(args):
    from rag.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic validation of RAG_* / rag.toml
        raise UserError(f"invalid settings: {str(exc).splitlines()[0]} ({exc})".replace("\n", " ")) from None


def _assistant(settings):
    from rag.assistant import Assistant

    return Assistant.from_settings(settings)


def print_answer(ans: Answer, console, streamed_text: str | None = None) -> None:
    if streamed_text is not None and streamed_text.split() != ans.text.split():
        console.print("\n[dim](answer corrected after checking:)[/dim]")
        console.print(ans.text, markup=False)
    elif streamed_text is None:
        console.print(ans.text, markup=False)
    if ans.standalone_question and ans.standalone_question != ans.question:
        console.print(f"[dim](searched for: {ans.standalone_question})[/dim]")
    for c in ans.citations:
        snippet = c.text if len(c.text) <= 160 else c.text[:157] + "…"
        console.print(f"[bold][{c.n}][/bold] {c.source} [{c.start}:{c.end}] ", end="")
        console.print(snippet, markup=False)


def cmd_index(args) -> int:
    from rag.ingest import discover

    settings = _settings(args)
    discover(settings.seeds_dir)  # a missing folder fails before any model loads
    console = _console(stderr=True)
    assistant = _assistant(settings)
    report = assistant.index(rebuild=args.rebuild, console=console)
    for src, found in report.mojibake.items():
        for m in found:
            console.print(f"[yellow]warning:[/yellow] {src}: suspected mojibake at {m}", markup=True)
    for err in report.errors:
        console.print(f"[red]error:[/red] {err}")
    for skipped in report.skipped:
        console.print(f"[yellow]skipped:[/yellow] {skipped}")
    print(report.summary())
    return 1 if report.errors else 0


def _require_index(settings) -> None:
    """Fail fast, before loading any model, when there is nothing to search."""
    from rag.store import ChunkStore

    if ChunkStore.current_build(settings.index_dir) is None:
        raise UserError(f"no index in {settings.index_dir}/ yet: run `rag index` first")


def cmd_ask(args) -> int:
    from rag.assistant import _check_question

    _check_question(args.question)
    settings = _settings(args)
    _require_index(settings)
    assistant = _assistant(settings)
    console = _console()
    if args.json:
        ans = assistant.ask(args.question, k=args.k, mode=args.mode)
        print(json.dumps(ans.to_dict(), ensure_ascii=False, indent=2))
        return 0
    final = stream_answer(assistant.stream(args.question, k=args.k, mode=args.mode), console)
    if final.notice:
        _console(stderr=True).print(f"[dim]note: {final.notice}[/dim]")
    return 0


def stream_answer(items, console) -> Answer:
    """Print text deltas as they come, then the checked answer's citations."""
    streamed: list[str] = []
    final = None
    for item in items:
        if isinstance(item, Answer):
            final = item
        else:
            streamed.append(item)
            console.print(item, end="", markup=False, soft_wrap=True)
    console.print()
    print_answer(final, console, "".join(streamed))
    return final


def cmd_chat(args) -> int:
    settings = _settings(args)
    _require_index(settings)
    assistant = _assistant(settings)
    console = _console()
    history: list[tuple[str, str]] = []
    st = assistant.status()
    console.print(f"[dim]{st['documents']} documents, {st['chunks']} chunks · {st['embed_model']} · {st['llm']}[/dim]")
    console.print("[dim]Ask a question (Chinese or English); empty line or Ctrl-D to quit, /clear to start over.[/dim]")
    while True:
        try:
            q = input("? ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        except UnicodeDecodeError:
            console.print("[red]error:[/red] that line is not valid text (not UTF-8); please type it again")
            continue
        if not q:
            return 0
        if q == "/clear":
            history.clear()
            continue
        try:
            final = stream_answer(assistant.stream(q, k=args.k, history=history, mode=args.mode), console)
            history.append((q, final.text))
        except UserError as exc:
            console.print(f"[red]error:[/red] {exc}")


def cmd_eval(args) -> int:
    from rag.evaluate import load_manifest, load_questions, run_eval, run_sets, select_sets

    settings = _settings(args)
    if args.file is not None:
        if args.sets is not None:
            raise UserError("give either an eval FILE (asked over the current index) or --sets, not both")
        load_questions(args.file)  # a bad eval file fails before any model loads
        _require_index(settings)
        assistant = _assistant(settings)
        run_eval(assistant, args.file, args.out, mode=args.mode, console=_console())
        return 0
    # Every set (or --sets) of the manifest, each over an index of its own corpus.
    sets = select_sets(load_manifest(args.manifest), args.sets)
    run_sets(sets, settings, args.out, mode=args.mode, console=_console(), cache_dir=args.index_cache)
    return 0


def cmd_models(args) -> int:
    from rag.embedmodel import prepare_embedding_model

    settings = _settings(args)
    console = _console(stderr=True)
    prepare_embedding_model(settings, console=console)
    if not args.skip_llm:
        try:
            from rag.llm import prepare_llm
        except ImportError:
            console.print("LLM support not installed: answers will be extractive")
            return 0
        prepare_llm(settings, console=console)
    return 0


def cmd_serve(args) -> int:
    from rag.server import run

    settings = _settings(args)
    run(settings, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Offline multilingual RAG assistant with cited answers.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="index the documents folder (incremental)")
    s.add_argument("--rebuild", action="store_true", help="start over in a new index (the old one answers until done)")
    s.set_defaults(func=cmd_index)

    modes = ["extractive", "llm"]
    s = sub.add_parser("ask", help="answer one question with citations")
    s.add_argument("question")
    s.add_argument("--json", action="store_true", help="print the answer, citations and retrieved chunks as JSON")
    s.add_argument("-k", type=int, default=None, help="number of passages to retrieve")
    s.add_argument("--mode", choices=modes, default=None, help="answer mode (default: the configured backend)")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("chat", help="interactive chat in the terminal")
    s.add_argument("-k", type=int, default=None)
    s.add_argument("--mode", choices=modes, default=None)
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("eval", help="run the eval sets of evals/sets.toml, or one questions FILE over the current index")
    s.add_argument("file", nargs="?", default=None,
                   help="questions JSONL asked over the current index (default: every set of the manifest)")
    s.add_argument("--sets", default=None, help="comma-separated set names from the manifest (default: all)")
    s.add_argument("--manifest", default="evals/sets.toml", help="eval set manifest (default evals/sets.toml)")
    s.add_argument("--index-cache", default="runs/.index-cache",
                   help="where each set's corpus index is kept between runs (default runs/.index-cache)")
    s.add_argument("--out", default="runs/eval", help="folder for results.json (per set) and summary.json")
    s.add_argument("--mode", choices=modes, default=None)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("models", help="prepare the local models")
    msub = s.add_subparsers(dest="models_command", required=True)
    m = msub.add_parser("prepare", help="convert/verify the embedding model and join/verify the LLM")
    m.add_argument("--skip-llm", action="store_true", help="only prepare the embedding model")
    m.set_defaults(func=cmd_models)

    s = sub.add_parser("serve", help="serve the chat page, /v1 and /api/search")
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default 7860)")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    offline_environment()
    args = build_parser().parse_args(argv)
    from rag.assistant import MAX_K

    if getattr(args, "k", None) is not None and not 1 <= args.k <= MAX_K:
        print(f"error: -k must be from 1 to {MAX_K}, not {args.k}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # the machine, not the program: a full disk, a read-only folder, a
        # missing permission; one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Chroma's storage errors (e.g. a full disk: "Failed to apply logs to
        # the metadata segment") are the machine's too; anything else stays loud.
        if not type(exc).__module__.startswith("chromadb"):
            raise
        print(f"error: the index could not be used: {exc} (is its disk full?)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
