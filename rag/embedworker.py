"""A low-priority process that embeds passages for background indexing (uploads to a running server).

In the server's own process an upload's embedding shares the model's lock and torch's threads
with every query embedding, so each search waited for a whole passage batch (search p95 18x
idle during a 10 MB upload, bench/upload_under_load.py). Here the model runs in a process of
its own at the lowest CPU priority (nice 19): the OS hands the cores to requests whenever they
need them, and the upload gets all of them when the server is idle.

Protocol on stdin/stdout, length-prefixed pickles (framed by hand so that `select` can wait
for the next request with an idle timeout; a buffered reader could hide a queued one):
settings in -> ("ready", name, dim) | ("error", message) out; then list[str] in ->
float32 array out, until EOF or IDLE_S without a request.
"""
from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from rag.procs import apply_worker_nice, stop_process, worker_env

log = logging.getLogger(__name__)

IDLE_S = 300.0  # the worker exits after this long without work (its model costs ~0.5 GB of RAM)
NICE = 19
_HEADER = struct.Struct("<Q")


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _recv_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _recv(fd: int) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(fd, _HEADER.size))
    return pickle.loads(_recv_exact(fd, size))


def main() -> None:
    apply_worker_nice()
    idle = float(os.environ.get("RAG_WORKER_IDLE_S", IDLE_S))
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    try:
        from rag.embedmodel import load_embedder
        from rag.settings import Settings

        embedder = load_embedder(Settings(**_recv(inp)))
    except EOFError:
        return
    except Exception as exc:  # reported to the parent, which embeds in its own process instead
        _send(out, ("error", f"{type(exc).__name__}: {exc}"))
        return
    _send(out, ("ready", embedder.name, embedder.dim))
    while True:
        ready, _, _ = select.select([inp], [], [], idle)
        if not ready:
            return  # idle: free the memory; the parent starts a new worker when needed
        try:
            texts = _recv(inp)
        except EOFError:
            return
        # the texts arrive with their prefix: the parent's Embedder decides what is embedded
        _send(out, embedder._encode(list(texts)))


class EmbedderProcess:
    """Embeds passages in `python -m rag.embedworker`, niced, for `embedder` (the in-process
    Embedder of the same settings: same model, same prefixes, same batches).

    Anything that goes wrong with the worker (cannot start, dies, answers with the wrong
    model) is logged and the rest is embedded in this process: an upload never fails
    because of the worker."""

    def __init__(self, settings, embedder, *, nice: int = NICE, idle_s: float = IDLE_S):
        self.settings = settings
        self.embedder = embedder
        self.name = embedder.name
        self.dim = embedder.dim
        self.nice = nice
        self.idle_s = idle_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one batch in flight at a time

    def __repr__(self) -> str:
        return f"EmbedderProcess(name={self.name!r}, pid={self._proc.pid if self._proc else None})"

    # ---- the worker ------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        env = worker_env(self.nice, RAG_WORKER_IDLE_S=str(self.idle_s))
        proc = subprocess.Popen([sys.executable, "-m", "rag.embedworker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)
        try:
            _send(proc.stdin.fileno(), self.settings.model_dump())
            reply = _recv(proc.stdout.fileno())
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self._stop(proc)
            raise RuntimeError(f"the embedding worker did not start: {exc}") from exc
        if reply[0] != "ready" or reply[1] != self.name or reply[2] != self.dim:
            self._stop(proc)
            raise RuntimeError(f"the embedding worker did not start: {reply}")
        return proc

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        stop_process(proc, 10, terminate=False)  # the worker leaves at EOF

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)
                self._proc = None

    def _ask(self, items: list[str]) -> np.ndarray:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        try:
            _send(self._proc.stdin.fileno(), items)
            vecs = _recv(self._proc.stdout.fileno())
        except (OSError, EOFError, pickle.UnpicklingError):
            self._stop(self._proc)
            self._proc = None
            raise
        return np.asarray(vecs, dtype=np.float32).reshape(len(items), self.dim)

    def _encode_remote(self, items: list[str]) -> np.ndarray:
        try:
            return self._ask(items)
        except (OSError, EOFError, pickle.UnpicklingError):
            return self._ask(items)  # a worker that went idle and exited is replaced once

    # ---- the Embedder interface -----------------------------------------
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str], batch_callback: Callable[[int], Any] | None = None) -> np.ndarray:
        """Like Embedder.embed_passages, batch by batch through the worker."""
        if isinstance(texts, str):
            texts = [texts]
        items = [self.embedder.passage_prefix + t for t in texts]
        out = np.empty((len(items), self.dim), np.float32)
        step = self.embedder.batch_size
        remote = True
        with self._lock:
            for start in range(0, len(items), step):
                batch = items[start : start + step]
                if remote:
                    try:
                        out[start : start + len(batch)] = self._encode_remote(batch)
                    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
                        log.warning("embedding in this process instead of the worker: %s", exc)
                        remote = False
                if not remote:
                    out[start : start + len(batch)] = self.embedder._encode(batch)
                if batch_callback is not None:
                    batch_callback(start + len(batch))
        return out


if __name__ == "__main__":
    main()
