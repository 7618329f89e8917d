"""Load source documents from the seeds folder and decode them.

UTF-8 first (strict); otherwise charset-normalizer picks among the Chinese
legacy encodings (GB18030, Big5) and a few others.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rag.types import UserError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown")
_LEGACY_ENCODINGS = ["gb18030", "big5", "big5hkscs", "utf_16", "cp1252"]


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the seeds folder, "/"-separated
    text: str  # decoded original text (BOM removed); citations index into it
    sha256: str  # of the raw bytes
    encoding: str

    @property
    def is_markdown(self) -> bool:
        return self.source.lower().endswith((".md", ".markdown"))


def decode_bytes(data: bytes, name: str = "<bytes>") -> tuple[str, str]:
    """Return (text, encoding). Raises UserError when the bytes are not text."""
    if not data.strip():
        raise UserError(f"{name}: file is empty")
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"{name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=_LEGACY_ENCODINGS).best()
    if best is None:
        raise UserError(f"{name}: cannot detect the text encoding (not UTF-8, GB18030 or Big5)")
    return str(best), best.encoding


def load_document(path: Path, root: Path) -> Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    text, encoding = decode_bytes(data, rel)
    return Document(rel, text, hashlib.sha256(data).hexdigest(), encoding)


def discover(root: Path) -> list[Path]:
    """Supported files under root, sorted, hidden files skipped."""
    if not root.is_dir():
        raise UserError(f"documents folder not found: {root}")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
