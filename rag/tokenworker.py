"""A worker process that tokenises chunk texts for the keyword index while the indexer
writes vectors (jieba is pure Python; Chroma's writes hold the GIL, so a thread cannot overlap them).

Protocol on stdin/stdout: pickled list[str] in, pickled list[list[str]] out, one per batch, until EOF.
"""
from __future__ import annotations

import pickle
import subprocess
import sys
import threading


def main() -> None:
    import os

    nice = int(os.environ.get("RAG_WORKER_NICE", "0") or 0)
    if nice:
        os.nice(nice)  # tokenising an upload must not slow the server's requests
    from rag.retrieval import tokenize

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            texts = pickle.load(inp)
        except EOFError:
            return
        pickle.dump([tokenize(t) for t in texts], out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


class TokenizerProcess:
    """Feeds batches to `python -m rag.tokenworker` and collects the results in order
    (a thread each way, so neither pipe can fill up and stall the other)."""

    def __init__(self, batches: list[list[str]]):
        self.n = len(batches)
        self.results: list[list[list[str]]] = []
        self.error: BaseException | None = None
        import os

        from rag.priority import is_background

        env = dict(os.environ, RAG_WORKER_NICE="19" if is_background() else "0")
        self.proc = subprocess.Popen([sys.executable, "-m", "rag.tokenworker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._writer = threading.Thread(target=self._write, args=(batches,), daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def _write(self, batches) -> None:
        try:
            for b in batches:
                pickle.dump(b, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.close()
        except (BrokenPipeError, OSError) as exc:
            self.error = self.error or exc

    def _read(self) -> None:
        try:
            for _ in range(self.n):
                self.results.append(pickle.load(self.proc.stdout))
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self.error = self.error or exc

    def result(self) -> list[list[str]]:
        self._reader.join()
        self._writer.join()
        code = self.proc.wait()
        if self.error is not None or len(self.results) != self.n or code != 0:
            raise RuntimeError(f"the tokeniser process failed (exit code {code}): {self.error!r}")
        return [t for batch in self.results for t in batch]

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


if __name__ == "__main__":
    main()
