"""Chunking: sentence splitting, size limit, headings, ids."""
from __future__ import annotations

from rag.chunking import chunk_document, chunk_id, split_sentences
from rag.ingest import Document, load_document
from rag.normalize import clean_text
from tests.conftest import SEED


def _doc(text, source="a.txt"):
    return Document(source, text, "sha", "utf-8")


def test_split_sentences_chinese_and_ascii():
    text = "第一句。第二句！第三句？“引號內。”第四句；第五句……第六句 40.5萬億 ok. Last one"
    got = [text[a:b] for a, b in split_sentences(text)]
    assert got == ["第一句。", "第二句！", "第三句？", "“引號內。”", "第四句；", "第五句……", "第六句 40.5萬億 ok.", "Last one"]


def test_chunks_respect_max_and_keep_headings():
    doc = load_document(SEED, SEED.parent)
    for max_chars in (300, 120, 60):
        chunks = chunk_document(doc, max_chars)
        assert chunks and all(len(c.text) <= max_chars for c in chunks)
    chunks = chunk_document(doc, 300)
    shanghai = next(c for c in chunks if "上海市加快推動" in c.text)
    assert shanghai.heading == "不僅是技術層面的升級，更是競爭邏輯的變革"
    assert shanghai.text.startswith("今年8月，上海推出")
    assert "(yè)" not in shanghai.text
    # the citation span covers the same passage in the original file
    assert clean_text(doc.text[shanghai.start:shanghai.end]).text == shanghai.text
    assert not any("期刊" in c.text for c in chunks)


def test_long_sentence_split_at_clause_break():
    sentence = "，".join(["這是一個很長的分句用來測試"] * 40) + "。"
    chunks = chunk_document(_doc(sentence), 100)
    assert len(chunks) > 3
    assert all(len(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == sentence


def test_ids_hash_source_and_content():
    a = chunk_document(_doc("第一段。\n第二段。", "a.txt"))
    b = chunk_document(_doc("第一段。\n第二段。", "b.txt"))
    a2 = chunk_document(_doc("第一段。\n第二段改了。", "a.txt"))
    assert a[0].id == chunk_id("a.txt", "第一段。")
    assert a[0].id != b[0].id  # same text, other file
    assert a[0].id == a2[0].id  # unchanged passage keeps its id
    assert a[1].id != a2[1].id
    dup = chunk_document(_doc("重複。\n重複。"))
    assert len({c.id for c in dup}) == 2
