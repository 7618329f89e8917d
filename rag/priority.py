"""Foreground first: while searches or answers are in flight, background work
(indexing an upload, reloading a build) pauses between small units of work.

The model's work goes to a niced process (rag/embedworker.py), and so does
tokenising a large upload (rag/tokenworker.py), but the rest of
indexing is Python (reading, chunking, tokenising, Chroma calls) and holds the
GIL, which the OS scheduler cannot prioritise; so the background thread calls
`checkpoint()` between units of work and waits there, at most MAX_WAIT_S each
time, while any `foreground()` request runs. The bound keeps indexing moving
under constant load: it then gets a small share of the time instead of none.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

MAX_WAIT_S = 0.2
_cond = threading.Condition()
_inflight = 0
_local = threading.local()


@contextmanager
def foreground():
    """Mark a request (search, answer) as in flight for its whole duration."""
    global _inflight
    with _cond:
        _inflight += 1
    try:
        yield
    finally:
        with _cond:
            _inflight -= 1
            if _inflight == 0:
                _cond.notify_all()


def mark_background() -> None:
    """Calls to checkpoint() from this thread from now on yield to requests."""
    _local.background = True


def is_background() -> bool:
    """Whether this thread does background work (its helper processes are niced)."""
    return bool(getattr(_local, "background", False))


def checkpoint() -> None:
    """Between units of background work: wait (bounded) while requests are in flight."""
    if is_background():
        with _cond:
            if _inflight:
                _cond.wait_for(lambda: _inflight == 0, timeout=MAX_WAIT_S)
