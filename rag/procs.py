"""Stopping child processes (servers started by tests and benchmarks, worker processes):
ask politely, wait, then kill, so that none outlives its owner."""
from __future__ import annotations

import subprocess


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
