"""Stopping child processes (servers started by tests and benchmarks, worker processes):
ask politely, wait, then kill, so that none outlives its owner."""
from __future__ import annotations

import os
import subprocess

NICE_ENV = "RAG_WORKER_NICE"  # a worker process lowers its own CPU priority by this much


def worker_env(nice: int, **extra: str) -> dict[str, str]:
    """The environment for a worker process that calls `apply_worker_nice()` at start."""
    return dict(os.environ, **{NICE_ENV: str(nice)}, **extra)


def apply_worker_nice() -> None:
    """In a worker process: lower this process's CPU priority as its parent asked."""
    nice = int(os.environ.get(NICE_ENV, "0") or 0)
    if nice:
        os.nice(nice)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0, *, terminate: bool = True) -> int:
    """Stop `proc` (SIGTERM, or with terminate=False just close its pipes: workers that
    exit at EOF on stdin), wait up to `timeout` s, then SIGKILL; returns its exit code."""
    if terminate:
        proc.terminate()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
