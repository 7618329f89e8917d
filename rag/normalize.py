"""Clean scraped Chinese/English text while keeping a map back to the original.

Strips pinyin annotations, folds full-width/half-width forms, drops footers
and ellipsis lines, reports mojibake, and splits the text into headings and
paragraphs. Every cleaned character remembers the span of the original text
it came from, so a citation can always point at the original characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.text import CJK
from rag.text import CJK_RE as _CJK_RE

_TONE = "āáǎàēéěèīíǐìōóǒòūúǔùüǘǚǜ"
# `制造業(yè)`: a pinyin syllable with a tone mark, in ASCII or full-width
# parentheses, glued to the ideograph it annotates. Requiring the tone mark
# keeps real parentheticals like `(2025年)` or `(AI)` intact.
_SYLLABLE = rf"[a-zü{_TONE}]*[{_TONE}][a-zü{_TONE}]*"  # a pinyin syllable with its tone mark
_PINYIN_RE = re.compile(rf"(?<=[^\sA-Za-z0-9(（])[(（]{_SYLLABLE}[)）]")
# A pinyin annotation whose `(` and annotated character were lost to mojibake
# (`變?yōu)樽非`: UTF-8 bytes once decoded as GBK, the lost bytes shown as `?`). The
# `?` is not a question mark: read as one, it ended a sentence mid-clause and cut the
# rest of the sentence off every quote of it. It becomes U+FFFD, the replacement
# character (the annotated character is lost), and the pinyin tail goes as annotations do.
_DAMAGED_PINYIN_RE = re.compile(rf"\?{_SYLLABLE}\)")
LOST = "\ufffd"
# ASCII punctuation that the scrape used inside Chinese text.
_ASCII_TO_FULL = {",": "，", ":": "：", ";": "；", "?": "？", "!": "！"}
# ASCII punctuation between these sits "inside Chinese text".
_CJK_CONTEXT = f"{CJK}“”‘’「」『』《》（）。，、：；？！…—"
_ASCII_PUNCT_RE = re.compile(
    f"(?<=[{_CJK_CONTEXT}])[,:;?!]|[,:;?!](?=[{_CJK_CONTEXT}])"
)
_SPACES_RE = re.compile(r"[ \t\u3000\u00a0\r\f\v]+")
_ELLIPSIS_LINE_RE = re.compile(r"^[\s…\.。·⋯]+$")
TERMINAL = "。！？；!?;…"
_CLOSERS = "”’」』）)》\"'"
# Lines at the end of a scraped article that are publication furniture, not
# article text (masthead, copyright, "follow us" lines).
_FOOTER_RE = re.compile(
    r"期刊|版權|版权|編輯|编辑|來源|来源|轉載|转载|責任|责任|掃碼|扫码|關注|关注|公眾號|公众号"
    r"|copyright|all rights reserved|©",
    re.IGNORECASE,
)
_MD_HEADING_RE = re.compile(r"^#{1,6}\s+")


@dataclass
class CleanText:
    """Cleaned text plus, per cleaned character, its [start, end) in the original."""

    text: str
    starts: list[int]
    ends: list[int]
    original: str

    def span(self, a: int, b: int) -> tuple[int, int]:
        """Original-text span of cleaned characters [a, b)."""
        if b <= a:
            pos = self.starts[a] if a < len(self.starts) else len(self.original)
            return pos, pos
        return self.starts[a], self.ends[b - 1]


@dataclass
class Block:
    kind: str  # "heading" | "para"
    start: int  # offsets in the cleaned text
    end: int


@dataclass
class Mojibake:
    line: int  # 1-based
    column: int  # 1-based
    offset: int  # in the original text
    snippet: str

    def __str__(self) -> str:
        return f"line {self.line}, col {self.column}: {self.snippet!r}"


@dataclass
class CleanDocument:
    clean: CleanText
    blocks: list[Block]
    mojibake: list[Mojibake] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)


def _identity(text: str) -> CleanText:
    n = len(text)
    return CleanText(text, list(range(n)), list(range(1, n + 1)), text)


def _sub(ct: CleanText, pattern: re.Pattern[str], repl) -> CleanText:
    """re.sub that carries the offset map: replacement characters map to the
    whole original span of what they replace."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    text = ct.text
    for m in pattern.finditer(text):
        a, b = m.span()
        out.append(text[pos:a])
        starts.extend(ct.starts[pos:a])
        ends.extend(ct.ends[pos:a])
        r = repl(m) if callable(repl) else repl
        if r:
            s, e = ct.span(a, b)
            out.append(r)
            starts.extend([s] * len(r))
            ends.extend([e] * len(r))
        pos = b
    out.append(text[pos:])
    starts.extend(ct.starts[pos:])
    ends.extend(ct.ends[pos:])
    return CleanText("".join(out), starts, ends, ct.original)


def _fold_width(ch: str) -> str:
    code = ord(ch)
    # Full-width ASCII letters and digits -> half-width (ＡＩ２０２５ -> AI2025).
    if 0xFF10 <= code <= 0xFF19 or 0xFF21 <= code <= 0xFF3A or 0xFF41 <= code <= 0xFF5A:
        return chr(code - 0xFEE0)
    return ch


_FULLWIDTH_ALNUM_RE = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


def clean_text(original: str) -> CleanText:
    """Apply the character-level cleaning steps, keeping the offset map."""
    ct = _identity(original)
    ct = _sub(ct, _PINYIN_RE, "")
    ct = _sub(ct, _DAMAGED_PINYIN_RE, LOST)
    ct = _sub(ct, _FULLWIDTH_ALNUM_RE, lambda m: _fold_width(m.group()))
    ct = _sub(ct, _ASCII_PUNCT_RE, lambda m: _ASCII_TO_FULL[m.group()])
    ct = _sub(ct, re.compile(r"\r\n?"), "\n")
    ct = _sub(ct, _SPACES_RE, " ")
    return ct


def detect_mojibake(original: str) -> list[Mojibake]:
    """Find places where UTF-8 bytes were once decoded as GBK.

    No library detects this inside otherwise-valid text (ftfy handles the
    Latin-1 family, not GBK), so these are hand-written signals: `?!` glued to
    ideographs, Japanese kana in Chinese text, a lone Latin letter between
    ideographs and a pinyin tail without its `(`. Signals within 12 characters are
    grouped into one report. The damage cannot be reversed (the `?` replaced
    lost bytes), so it is reported, not repaired. (Simplified-only characters
    in a traditional text were tried as a signal too; scrapes mix scripts
    legitimately -- 后, 于, 范 -- so that gave false alarms.)
    """
    anchors: list[int] = []
    for rx in (
        re.compile(f"\\?!(?=[{CJK}])"),
        re.compile("[\u3040-\u30ff]"),
        re.compile(f"(?<=[{CJK}])[a-zA-Z](?=[{CJK}])"),
        re.compile(f"\\?[a-z{_TONE}]+\\)"),
    ):
        anchors.extend(m.start() for m in rx.finditer(original))
    anchors.sort()
    groups: list[list[int]] = []
    for a in anchors:
        if groups and a - groups[-1][-1] <= 12:
            groups[-1].append(a)
        else:
            groups.append([a])
    found = []
    # A lone simplified character in a traditional text is a weak signal
    # (scrapes mix scripts); require two signals, or one strong one.
    for g in groups:
        strong = any(
            original[i] == "?" or "\u3040" <= original[i] <= "\u30ff" for i in g
        )
        if len(g) < 2 and not strong:
            continue
        a, b = g[0], g[-1] + 1
        line = original.count("\n", 0, a) + 1
        col = a - (original.rfind("\n", 0, a) + 1) + 1
        found.append(Mojibake(line, col, a, original[max(0, a - 4) : min(len(original), b + 6)]))
    return found


# A heading is short: 40 characters of Chinese, or in a Latin-script language as many
# words as Chinese says in 40 characters (an English word carries about what 1.5-2 Chinese
# characters do; "Halvorsen Marine Group: 2024 Annual Results Summary" is a title at 51
# characters, 7 words).
_HEADING_MAX_CHARS = 40
_HEADING_MAX_WORDS = 12
_LATIN_WORD_RE = re.compile(r"[A-Za-z0-9][\w'’\-]*")


def _short_line(line: str) -> bool:
    if len(line) <= _HEADING_MAX_CHARS:
        return True
    return not _CJK_RE.search(line) and len(_LATIN_WORD_RE.findall(line)) <= _HEADING_MAX_WORDS


def _ends_sentence(line: str) -> bool:
    s = line.rstrip(_CLOSERS + " ")
    return bool(s) and s[-1] in TERMINAL


def clean_document(original: str, *, markdown: bool = False) -> CleanDocument:
    """Clean a whole document and split it into heading and paragraph blocks."""
    ct = clean_text(original)
    text = ct.text
    # Lines with their cleaned-text offsets, stripped of surrounding spaces.
    lines: list[tuple[int, int]] = []
    pos = 0
    for raw in text.split("\n"):
        a, b = pos, pos + len(raw)
        pos = b + 1
        while a < b and text[a] in " \ufeff":
            a += 1
        while b > a and text[b - 1] == " ":
            b -= 1
        if a < b:
            lines.append((a, b))
    # Footer: trailing short lines without sentence punctuation that look
    # like publication furniture.
    footer: list[str] = []
    while lines:
        a, b = lines[-1]
        line = text[a:b]
        if len(line) <= 30 and not _ends_sentence(line) and _FOOTER_RE.search(line):
            footer.insert(0, line)
            lines.pop()
        else:
            break
    blocks: list[Block] = []
    for a, b in lines:
        line = text[a:b]
        if _ELLIPSIS_LINE_RE.match(line):
            continue
        if markdown and _MD_HEADING_RE.match(line):
            a += _MD_HEADING_RE.match(line).end()
            if a < b:
                blocks.append(Block("heading", a, b))
            continue
        is_heading = (
            _short_line(line)
            and not _ends_sentence(line)
            and not line.endswith(("：", ":", "，", ","))
            # "." ends an English sentence (a Chinese title may end in one: 奇迹少女KOBATO.)
            and not (line.endswith(".") and not _CJK_RE.search(line))
            and bool(_CJK_RE.search(line) or line[:1].isupper())
        )
        blocks.append(Block("heading" if is_heading else "para", a, b))
    return CleanDocument(ct, blocks, detect_mojibake(original), footer)
