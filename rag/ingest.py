"""Load source documents from the seeds folder and decode them.

UTF-8 first (strict); otherwise charset-normalizer picks among the Chinese
legacy encodings (GB18030, Big5) and a few others.
"""
from __future__ import annotations

import hashlib
import os
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


def check_size(size: int, name: str, max_mb: float, setting: str) -> None:
    """UserError when a document is over the size limit (named by its setting)."""
    if size > max_mb * 1024 * 1024:
        raise UserError(f"{name}: {size / 1e6:.1f} MB is over the {max_mb:g} MB limit for one document ({setting})")


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; a symbolic link is refused, not followed
    (O_NOFOLLOW also closes the gap between listing the folder and reading)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if path.is_symlink():
            raise UserError(f"{path}: is a symbolic link; links are not followed") from None
        raise UserError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as exc:
            raise UserError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def load_document(path: Path, root: Path) -> Document:
    data = read_regular_file(path)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    text, encoding = decode_bytes(data, rel)
    return Document(rel, text, hashlib.sha256(data).hexdigest(), encoding)


def discover(root: Path, skipped: list[str] | None = None) -> list[Path]:
    """Supported files under root, sorted, hidden files skipped.

    Symbolic links (to files or folders) are never followed: a link could
    point anywhere on the machine (`link.txt -> /etc/passwd`), and whatever is
    indexed can be read back through search. Each one is named in `skipped`."""
    if not root.is_dir():
        raise UserError(f"documents folder not found: {root}")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if (here / d).is_symlink() and skipped is not None:
                skipped.append(f"{(here / d).relative_to(root).as_posix()}/: symbolic link, not followed")
        for name in filenames:
            p = here / name
            if name.startswith(".") or p.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            if p.is_symlink():
                if skipped is not None:
                    skipped.append(f"{p.relative_to(root).as_posix()}: symbolic link, not followed")
            elif p.is_file():
                found.append(p)
    return sorted(found)
