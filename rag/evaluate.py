"""Eval runner: questions JSONL in, results.json and a score table out.

Scores: hit@1/3/5 and MRR of the evidence among retrieved chunks, answer fact
accuracy, refusal accuracy, false-refusal rate, latency; overall and per lang.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.lang import detect_lang, to_simplified
from rag.text import numerals_to_digits
from rag.types import UserError

_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)
_CITE_RE = re.compile(r"\[\d+\]")


@dataclass
class EvalItem:
    id: str
    question: str
    lang: str = ""
    evidence: list[str] = field(default_factory=list)
    answer_must: list[list[str]] = field(default_factory=list)
    answerable: bool = True


def load_questions(path: str | Path) -> list[EvalItem]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"eval file not found: {p}")
    items = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise UserError(f"{p}:{n}: each line needs an object with a non-empty \"question\"")
        must = obj.get("answer_must") or []
        if must and not all(isinstance(g, list) for g in must):
            raise UserError(f"{p}:{n}: \"answer_must\" must be a list of lists of strings")
        items.append(
            EvalItem(
                id=str(obj.get("id", f"q{n}")),
                question=obj["question"],
                lang=str(obj.get("lang") or detect_lang(obj["question"])),
                evidence=[str(e) for e in obj.get("evidence") or []],
                answer_must=[[str(a) for a in g] for g in must],
                answerable=bool(obj.get("answerable", True)),
            )
        )
    if not items:
        raise UserError(f"{p}: no questions")
    return items


def _norm(text: str) -> str:
    return _PUNCT_RE.sub("", to_simplified(text).lower())


def supports(chunk_text: str, evidence: list[str]) -> bool:
    """A chunk supports a question when, in simplified Chinese (punctuation
    and spacing ignored), it contains any evidence string."""
    t = _norm(chunk_text)
    return any(_norm(e) and _norm(e) in t for e in evidence)


_WHOLE_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")


def _holds_number(a: str, alt: str) -> bool:
    """Whether the answer writes the whole number `alt` ("4", "32,500") in Chinese numerals
    (四, 三万二千五百, 一八六五), not as part of a longer number: cn2an writes the answer's
    numerals in digits. 1 is left out: 一 is a part of too many words (统一, 一些)."""
    if not _WHOLE_NUMBER_RE.fullmatch(alt) or alt.replace(",", "") == "1":
        return False
    digits = numerals_to_digits(a)
    if digits is None:
        return False
    n = alt.replace(",", "")
    return re.search(rf"(?<![\d.]){n}(?![\d.])", digits) is not None


def facts_ok(answer: str, groups: list[list[str]]) -> bool:
    """Whether the answer holds every group's fact (any alternative of each). A number
    expected in digits also counts in Chinese numerals: an extractive answer to an English
    question quotes the Chinese passage, where "4 songs" is 四首歌."""
    a = to_simplified(answer).lower()
    return all(any(alt.lower() in a or _holds_number(a, alt) for alt in group) for group in groups)


def answered_in_english(text: str) -> bool:
    return detect_lang(_CITE_RE.sub("", text)) == "en"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["answerable"]]
    un = [r for r in rows if not r["answerable"]]

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    lat = [r["latency_ms"] for r in rows]
    en = [r for r in rows if r.get("lang") == "en" and r["answerable"] and not r["refused"]]
    return {
        "n": len(rows),
        "answerable": len(ans),
        "unanswerable": len(un),
        "hit@1": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 1 for r in ans]),
        "hit@3": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 3 for r in ans]),
        "hit@5": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 5 for r in ans]),
        "mrr": mean([1.0 / r["evidence_rank"] if r["evidence_rank"] else 0.0 for r in ans]),
        "fact_accuracy": mean([r["facts_ok"] for r in ans]),
        "refusal_accuracy": mean([r["refused"] for r in un]),
        "false_refusal_rate": mean([r["refused"] for r in ans]),
        "english_answer_share": mean([answered_in_english(r["answer"]) for r in en]),
        "latency_p50_ms": round(percentile(lat, 0.5), 1),
        "latency_p95_ms": round(percentile(lat, 0.95), 1),
    }


def run_eval(assistant, file, out_dir, mode: str | None = None, console=None, title: str = "eval") -> dict:
    items = load_questions(file)
    k = max(5, assistant.settings.top_k)
    rows = []
    progress = None
    if console is not None:
        from rich.progress import Progress

        progress = Progress(console=console, transient=True)
        progress.start()
        task = progress.add_task(f"{title}: questions", total=len(items))
    try:
        for it in items:
            t0 = time.perf_counter()
            ans = assistant.ask(it.question, k=k, mode=mode)
            latency = (time.perf_counter() - t0) * 1000
            rank = next((h.rank for h in ans.hits if supports(h.chunk.text, it.evidence)), None)
            rows.append(
                {
                    "id": it.id,
                    "question": it.question,
                    "lang": it.lang,
                    "answerable": it.answerable,
                    "retrieved": [
                        {"rank": h.rank, "text": h.chunk.text, "source": h.chunk.source, "score": round(h.score, 6),
                         "start": h.chunk.start, "end": h.chunk.end}
                        for h in ans.hits
                    ],
                    "answer": ans.text,
                    "refused": ans.refused,
                    "notice": ans.notice,  # why the answer is what it is (fallback, judge), when said
                    "citations": [
                        {"n": c.n, "source": c.source, "text": c.text, "start": c.start, "end": c.end}
                        for c in ans.citations
                    ],
                    "standalone_question": ans.standalone_question,
                    "mode": ans.mode,
                    "latency_ms": round(latency, 1),
                    "evidence_rank": rank,
                    "facts_ok": it.answerable and not ans.refused and facts_ok(ans.text, it.answer_must),
                }
            )
            if progress:
                progress.advance(task)
    finally:
        if progress:
            progress.stop()
    summary = {"mode": rows[0]["mode"] if rows else mode, "overall": summarize(rows), "by_lang": {}}
    for lang in sorted({r["lang"] for r in rows}):
        summary["by_lang"][lang] = summarize([r for r in rows if r["lang"] == lang])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"summary": summary, "questions": rows}
    (out / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if console is not None:
        print_table(summary, console, title=f"{title} ({summary.get('mode')})")
        console.print(f"wrote {out / 'results.json'}")
    return result


METRICS = [
    ("hit@1", "hit@1"), ("hit@3", "hit@3"), ("hit@5", "hit@5"), ("mrr", "MRR"),
    ("fact_accuracy", "fact acc"), ("refusal_accuracy", "refusal acc"), ("false_refusal_rate", "false refusals"),
    ("english_answer_share", "answered in en"), ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
]


def print_table(summary: dict, console, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title or f"eval ({summary.get('mode')})")
    table.add_column("metric")
    cols = [("all", summary["overall"])] + list(summary["by_lang"].items())
    for name, s in cols:
        table.add_column(f"{name} (n={s['n']})", justify="right")
    for key, label in METRICS:
        vals = []
        for _, s in cols:
            v = s.get(key)
            vals.append("-" if v is None else (f"{v:.0f}" if key.startswith("latency") else f"{v:.3f}"))
        table.add_row(label, *vals)
    console.print(table)


# ---------------------------------------------------------------------------- eval sets
# A manifest (evals/sets.toml) lists sets, each a questions file and the corpus
# folder it is asked over; every corpus gets its own index, kept in a cache keyed
# by the corpus content so a second run only re-reads the files.

DEFAULT_MANIFEST = Path("evals/sets.toml")
DEFAULT_INDEX_CACHE = Path("runs/.index-cache")
_SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class EvalSet:
    name: str
    questions: Path
    corpus: Path
    fit: bool = True  # the fit scripts (gate, picker, judge) learn from it; else rag eval only

    @property
    def corpus_name(self) -> str:
        """The corpus's name: its folder's, or the parent's for a folder called `corpus`
        (evals/cmrc-train/corpus is "cmrc-train"). The fit scripts' cross-validation folds."""
        return corpus_name(self.corpus)


def corpus_name(folder: Path) -> str:
    """A corpus folder's name, or its parent's when the folder is called `corpus`."""
    return folder.name if folder.name != "corpus" else folder.parent.name


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> list[EvalSet]:
    """The sets of a TOML manifest (`[[set]]` tables with name, questions, corpus and
    optionally fit; paths relative to the manifest). UserError for anything malformed or
    missing."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise UserError(f"eval manifest not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid TOML ({exc})") from None
    entries = data.get("set")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{p}: needs at least one [[set]] table with name, questions and corpus")
    sets: list[EvalSet] = []
    for n, e in enumerate(entries, start=1):
        where = f"{p}: set #{n}"
        if not isinstance(e, dict):
            raise UserError(f"{where}: must be a table")
        unknown = set(e) - {"name", "questions", "corpus", "fit"}
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "questions", "corpus"):
            if not isinstance(e.get(key), str) or not e[key].strip():
                raise UserError(f"{where}: \"{key}\" must be a non-empty string")
        name = e["name"]
        if not _SET_NAME_RE.match(name):
            raise UserError(f"{where}: name {name!r} may only hold letters, digits, '.', '_' and '-'")
        if any(s.name == name for s in sets):
            raise UserError(f"{p}: set name {name!r} is used twice")
        questions = (p.parent / e["questions"]).resolve()
        corpus = (p.parent / e["corpus"]).resolve()
        if not questions.is_file():
            raise UserError(f"{where} ({name}): questions file not found: {questions}")
        if not corpus.is_dir():
            raise UserError(f"{where} ({name}): corpus folder not found: {corpus}")
        if not isinstance(e.get("fit", True), bool):
            raise UserError(f"{where} ({name}): \"fit\" must be true or false")
        sets.append(EvalSet(name, questions, corpus, e.get("fit", True)))
    return sets


def fit_sets(path: str | Path = DEFAULT_MANIFEST) -> list[EvalSet]:
    """The manifest's sets the fit scripts learn from (`fit = false` leaves a set out)."""
    return [s for s in load_manifest(path) if s.fit]


def select_sets(sets: list[EvalSet], names: str | None) -> list[EvalSet]:
    """The sets named in a comma-separated list (all when None), in manifest order."""
    if names is None:
        return list(sets)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise UserError("--sets needs at least one set name")
    known = {s.name for s in sets}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UserError(f"unknown eval set(s) {', '.join(unknown)}; the manifest has {', '.join(s.name for s in sets)}")
    return [s for s in sets if s.name in wanted]


def corpus_key(corpus: Path, settings) -> str:
    """Cache key of a corpus index: the files' paths and bytes, the embedding
    model and the chunk size (anything else the indexer reconciles itself)."""
    import hashlib

    from rag.ingest import discover

    h = hashlib.sha256()
    h.update(f"{settings.embed_model}\0{settings.chunk_max_chars}\0".encode())
    root = Path(corpus)
    for f in sorted(discover(root)):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def open_set_assistant(spec: EvalSet, settings, cache_dir: str | Path = DEFAULT_INDEX_CACHE, *,
                       embedder=None, console=None):
    """An Assistant over `spec.corpus`, indexed into cache_dir/<corpus hash>.

    The index is brought up to date incrementally, so a second call over the same
    corpus embeds nothing. Pass `embedder` to share one loaded model between sets."""
    from rag.assistant import Assistant
    from rag.ingest import discover

    if not discover(spec.corpus):
        raise UserError(f"eval set {spec.name}: no documents in {spec.corpus}")
    index_dir = Path(cache_dir) / corpus_key(spec.corpus, settings)
    s = settings.model_copy(update={"seeds_dir": Path(spec.corpus), "index_dir": index_dir})
    if embedder is None:
        from rag.embedmodel import load_embedder

        embedder = load_embedder(s)
    assistant = Assistant(s, embedder)
    report = assistant.index(console=console)
    if report.errors:
        raise UserError(f"eval set {spec.name}: could not index {spec.corpus}: {'; '.join(report.errors)}")
    if console is not None:
        console.print(f"[dim]{spec.corpus}: {report.summary()} -> {index_dir}[/dim]")
    return assistant


def combine(results: dict[str, dict], mode: str | None = None) -> dict:
    """One summary over the questions of several run_eval results."""
    rows = [r for res in results.values() for r in res["questions"]]
    summary = {"mode": mode or (rows[0]["mode"] if rows else None), "overall": summarize(rows), "by_lang": {}}
    for lang in sorted({r["lang"] for r in rows}):
        summary["by_lang"][lang] = summarize([r for r in rows if r["lang"] == lang])
    return summary


def run_sets(sets: list[EvalSet], settings, out_dir, mode: str | None = None, console=None,
             cache_dir: str | Path = DEFAULT_INDEX_CACHE, embedder=None) -> dict:
    """Run each set over its own corpus index (one build per corpus folder), write
    out_dir/<set>/results.json and out_dir/summary.json, print per-set and combined tables."""
    for spec in sets:  # bad question files fail before any model loads or index is built
        load_questions(spec.questions)
    if embedder is None:
        from rag.embedmodel import load_embedder

        embedder = load_embedder(settings)
    out = Path(out_dir)
    results: dict[str, dict] = {}
    by_corpus: dict[Path, list[EvalSet]] = {}
    for spec in sets:
        by_corpus.setdefault(spec.corpus, []).append(spec)
    index_seconds: dict[str, float] = {}
    for corpus, group in by_corpus.items():
        t0 = time.perf_counter()
        assistant = open_set_assistant(group[0], settings, cache_dir, embedder=embedder, console=console)
        index_seconds[str(corpus)] = round(time.perf_counter() - t0, 2)
        for spec in group:
            if console is not None:
                console.rule(f"{spec.name} ({spec.questions.name} over {corpus})")
            results[spec.name] = run_eval(assistant, spec.questions, out / spec.name, mode=mode, console=console,
                                          title=spec.name)
    combined = combine(results, mode)
    summary = {
        "mode": combined["mode"],
        "sets": {
            s.name: {"questions": str(s.questions), "corpus": str(s.corpus), **results[s.name]["summary"]}
            for s in sets
        },
        "combined": combined,
        "index_seconds": index_seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    if console is not None:
        console.rule("all sets")
        print_table(combined, console, title=f"all sets ({combined['mode']})")
        print_sets_table(summary, console)
        console.print(f"wrote {out / 'summary.json'}")
    return summary


SET_METRICS = [
    ("hit@1", "hit@1"), ("fact_accuracy", "fact acc"), ("refusal_accuracy", "refusal acc"),
    ("false_refusal_rate", "false refusals"),
]


def print_sets_table(summary: dict, console) -> None:
    """One row per set (and per language within it), then the combined row."""
    from rich.table import Table

    table = Table(title=f"eval sets ({summary.get('mode')})")
    table.add_column("set", no_wrap=True)  # names stay whole; the number headers wrap instead
    table.add_column("lang", no_wrap=True)
    table.add_column("n", justify="right")
    for _, label in SET_METRICS:
        table.add_column(label, justify="right", min_width=8)

    def row(name, lang, s, **kw):
        vals = []
        for key, _ in SET_METRICS:
            v = s.get(key)
            vals.append("-" if v is None else (f"{v:.0f}" if key.startswith("latency") else f"{v:.3f}"))
        table.add_row(name, lang, str(s["n"]), *vals, **kw)

    for name, s in summary["sets"].items():
        langs = list(s["by_lang"])
        row(name, langs[0] if len(langs) == 1 else "all", s["overall"])
        if len(langs) > 1:
            for lang, ls in s["by_lang"].items():
                row("", lang, ls)
    table.add_section()
    c = summary["combined"]
    row("combined", "all", c["overall"], style="bold")
    for lang, ls in c["by_lang"].items():
        row("", lang, ls)
    console.print(table)
