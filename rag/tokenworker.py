"""A worker process that tokenises chunk texts for the keyword index while the indexer
writes vectors (jieba is pure Python; Chroma's writes hold the GIL, so a thread cannot overlap them).

Protocol on stdin/stdout: pickled list[str] in, one pickled (vocab, codes, lens) out per batch
until EOF: the batch's distinct tokens, every text's tokens as int32 codes into them (concatenated)
and the token count of each text (ten million token strings would cost more to pickle than to cut).
"""
from __future__ import annotations

import pickle
import subprocess
import sys
import threading


def main() -> None:
    from rag.procs import apply_worker_nice

    apply_worker_nice()  # tokenising an upload must not slow the server's requests
    from rag.tokens import tokenize

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            texts = pickle.load(inp)
        except EOFError:
            return
        pickle.dump(encode([tokenize(t) for t in texts]), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


def encode(token_lists: list[list[str]]):
    """(distinct tokens, int32 codes of all tokens into them, tokens per list)."""
    import numpy as np

    vocab: dict[str, int] = {}
    codes = np.array([vocab.setdefault(t, len(vocab)) for toks in token_lists for t in toks], dtype=np.int32)
    return list(vocab), codes, np.array([len(t) for t in token_lists], dtype=np.int32)


class TokenizerProcess:
    """Feeds batches to `python -m rag.tokenworker` and collects the results in order
    (a thread each way, so neither pipe can fill up and stall the other)."""

    def __init__(self, batches: list[list[str]]):
        self.n = len(batches)
        self.results: list[list[list[str]]] = []
        self.error: BaseException | None = None
        from rag.priority import is_background
        from rag.procs import worker_env

        env = worker_env(19 if is_background() else 0)
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

    def encoded(self) -> list:
        """The (vocab, codes, lens) of each batch, in order."""
        self._reader.join()
        self._writer.join()
        code = self.proc.wait()
        if self.error is not None or len(self.results) != self.n or code != 0:
            raise RuntimeError(f"the tokeniser process failed (exit code {code}): {self.error!r}")
        return self.results

    def result(self) -> list[list[str]]:
        """The tokens of every text, in order."""
        out = []
        for vocab, codes, lens in self.encoded():
            ends = lens.cumsum().tolist()
            for start, end in zip([0] + ends[:-1], ends):
                out.append([vocab[c] for c in codes[start:end].tolist()])
        return out

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


if __name__ == "__main__":
    main()
