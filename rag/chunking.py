"""Split cleaned documents into small, citable chunks.

Chinese-aware sentence splitting (。！？；… and their ASCII forms, line
breaks), sentences packed within a paragraph up to a size limit, the current
section heading kept as context; chunk ids hash the source and the content.
"""
from __future__ import annotations

import hashlib
import re

from rag.ingest import Document
from rag.normalize import Block, CleanDocument, clean_document
from rag.types import Chunk

# What cleaning and chunking make of a file's bytes. Bump it when a change to
# rag/normalize.py or this module changes the chunks a file gives: an index made with
# another version re-reads every file at its next `rag index` (chunk ids are content
# hashes, so only the chunks that changed are embedded again). 2: a pinyin annotation
# damaged by mojibake no longer ends a sentence. 3: a title line of an English document
# longer than 40 characters is a heading (rag/normalize.py `_short_line`), not a paragraph.
TEXT_VERSION = 3

# A sentence ends at terminal punctuation (a run of it, e.g. `……` or `？！`),
# plus any closing quotes/brackets that follow. ASCII `.` ends a sentence only
# before whitespace, so "40.5" and "e.g." inside a line stay whole.
_SENT_END_RE = re.compile(r"(?:[。！？；!?;]+|…+|\.(?=\s))[”’」』）)》\"']*")
_SOFT_BREAK_RE = re.compile(r"[，、：,:]")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans [a, b) of text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _SENT_END_RE.finditer(text, start, end):
        spans.append((pos, m.end()))
        pos = m.end()
    if pos < end:
        spans.append((pos, end))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def _split_long(text: str, a: int, b: int, max_chars: int) -> list[tuple[int, int]]:
    """A sentence longer than max_chars is cut at the last clause break
    (，、：) before the limit, or hard at the limit when there is none."""
    out = []
    while b - a > max_chars:
        cut = None
        for m in _SOFT_BREAK_RE.finditer(text, a, a + max_chars):
            cut = m.end()
        if cut is None or cut - a < max_chars // 3:
            cut = a + max_chars
        out.append((a, cut))
        a = cut
    out.append((a, b))
    return out


def chunk_id(source: str, text: str, occurrence: int = 0) -> str:
    h = hashlib.sha256(f"{source}\x00{text}".encode()).hexdigest()[:20]
    return h if occurrence == 0 else f"{h}-{occurrence}"


def chunk_document(doc: Document, max_chars: int = 300, cleaned: CleanDocument | None = None) -> list[Chunk]:
    """Chunks of one document, in order."""
    cd = cleaned or clean_document(doc.text, markdown=doc.is_markdown)
    text = cd.clean.text
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    heading = ""

    def emit(a: int, b: int) -> None:
        piece = text[a:b].strip()
        if not piece:
            return
        occ = seen.get(piece, 0)
        seen[piece] = occ + 1
        s, e = cd.clean.span(a, b)
        chunks.append(Chunk(chunk_id(doc.source, piece, occ), doc.source, piece, s, e, heading, len(chunks)))

    block: Block
    for block in cd.blocks:
        if block.kind == "heading":
            heading = text[block.start : block.end].strip()
            continue
        sentences: list[tuple[int, int]] = []
        for a, b in split_sentences(text, block.start, block.end):
            sentences.extend(_split_long(text, a, b, max_chars))
        cur_a = cur_b = None
        for a, b in sentences:
            if cur_a is None:
                cur_a, cur_b = a, b
            elif b - cur_a <= max_chars:
                cur_b = b
            else:
                emit(cur_a, cur_b)
                cur_a, cur_b = a, b
        if cur_a is not None:
            emit(cur_a, cur_b)
    return chunks
