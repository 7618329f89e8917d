"""Offline multilingual retrieval-augmented question answering.

`from rag import Assistant` is the Python API; see docs/ARCHITECTURE.md.
"""
from rag.types import Answer, Chunk, Citation, Hit, UserError

__all__ = ["Assistant", "Answer", "Chunk", "Citation", "Hit", "UserError"]


def __getattr__(name):  # import the Assistant (and its heavy deps) lazily
    if name == "Assistant":
        from rag.assistant import Assistant

        return Assistant
    raise AttributeError(name)
