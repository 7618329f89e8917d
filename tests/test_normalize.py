"""Cleaning: pinyin, width folding, footer, mojibake, and the offset map."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.ingest import decode_bytes, load_document
from rag.normalize import clean_document, clean_text, detect_mojibake
from rag.types import UserError
from tests.conftest import SEED


@pytest.fixture(scope="module")
def seed_doc():
    doc = load_document(SEED, SEED.parent)
    return doc, clean_document(doc.text)


def test_pinyin_annotations_removed_but_real_parentheses_kept(seed_doc):
    doc, cd = seed_doc
    text = cd.clean.text
    assert "(yè)" not in text and "(fā)" not in text
    assert "制造業" in text
    assert "(2025年)" in text  # a real parenthetical stays
    assert "(占全國近半)" in text
    assert doc.text.count("(yè)") > 50  # the original really had them


def test_offset_map_points_back_to_original_characters(seed_doc):
    doc, cd = seed_doc
    clean = cd.clean
    for needle in ["上海市加快推動", "溫州市人工智能局", "3000家", "436億美元"]:
        i = clean.text.index(needle)
        s, e = clean.span(i, i + len(needle))
        original = doc.text[s:e]
        # the original span is the same text with pinyin annotations in it
        assert clean_text(original).text == needle, (needle, original)


def test_every_clean_char_maps_into_original(seed_doc):
    doc, cd = seed_doc
    for i, ch in enumerate(cd.clean.text):
        s, e = cd.clean.starts[i], cd.clean.ends[i]
        assert 0 <= s < e <= len(doc.text)
        if ch not in "，：；？！ \n\ufffd":  # folded punctuation, whitespace, lost bytes map to their source
            assert doc.text[s:e] == ch


def test_ascii_punctuation_in_chinese_folded_and_fullwidth_alnum_halved():
    ct = clean_text("今年8月,上海推出方案:計劃推動ＡＩ２０２５;好?")
    assert ct.text == "今年8月，上海推出方案：計劃推動AI2025；好？"
    assert clean_text("Hello, world: e.g. 1,000").text == "Hello, world: e.g. 1,000"


def test_footer_and_ellipsis_lines_dropped(seed_doc):
    _, cd = seed_doc
    assert cd.footer == ["中國期刊方陣雙效期刊", "華東地區優秀期刊"]
    block_texts = [cd.clean.text[b.start:b.end] for b in cd.blocks]
    assert not any("期刊" in t for t in block_texts)
    assert "……" not in block_texts


def test_headings_detected(seed_doc):
    _, cd = seed_doc
    headings = [cd.clean.text[b.start:b.end] for b in cd.blocks if b.kind == "heading"]
    assert headings == ["一場關乎未來的競速賽", "不僅是技術層面的升級，更是競爭邏輯的變革", "不是短跑，而是一場持久戰、精準戰"]


def test_mojibake_reported_with_location(seed_doc):
    doc, cd = seed_doc
    lines = [m.line for m in cd.mojibake]
    assert lines == [4, 11, 35, 50]
    for m in cd.mojibake:
        assert doc.text[m.offset] in "?!變"
    assert detect_mojibake("這是一段正常的文字。為什么?因為它沒有問題。") == []


def test_a_pinyin_annotation_damaged_by_mojibake_does_not_end_the_sentence(seed_doc):
    from rag.chunking import split_sentences

    ct = clean_text("會從“質量競賽”,變?yōu)樽非笳吡咙c和短期效應(yīng)的“姿態競爭”?這考驗")
    assert ct.text == "會從“質量競賽”，變\ufffd樽非笳吡咙c和短期效應的“姿態競爭”？這考驗"
    assert ct.original[ct.starts[ct.text.index("\ufffd")]:ct.ends[ct.text.index("\ufffd")]] == "?yōu)"
    sentences = [ct.text[a:b] for a, b in split_sentences(ct.text)]
    assert sentences[0].endswith("“姿態競爭”？") and "質量競賽" in sentences[0]
    # a real question mark before a parenthetical without tone marks stays one
    assert clean_text("是什么?(AI)").text == "是什么？(AI)"
    # the seed article's damaged annotation: its sentence holds what follows it
    _, cd = seed_doc
    text = cd.clean.text
    i = text.index("姿態競爭")
    assert any(a < text.index("質量競賽", i - 80) and b > i for a, b in split_sentences(text))


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "big5"])
def test_encodings_decode(encoding, tmp_path):
    text = "溫州市人工智能局正式揭牌，這是全國首個市級人工智能管理機構，引發外界強烈關注。" * 3
    if encoding == "gb18030":
        text = "温州市人工智能局正式揭牌，这是全国首个市级人工智能管理机构，引发外界强烈关注。" * 3
    p = tmp_path / "doc.txt"
    p.write_bytes(text.encode(encoding))
    doc = load_document(p, tmp_path)
    assert doc.text == text


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="empty"):
        decode_bytes(b"  \n", "x.txt")
    with pytest.raises(UserError, match="binary"):
        decode_bytes(b"\x00\x01\x02PNG\x00" * 20, "x.txt")
    with pytest.raises(UserError, match="cannot read"):
        load_document(tmp_path / "missing.txt", tmp_path)


def test_an_english_title_is_a_heading_by_its_words_not_its_characters():
    """A title of an English document runs past 40 characters in a few words; it is the
    heading of its chunks, not a paragraph of its own (a sentence, however short, is not)."""
    from rag.normalize import clean_document

    text = ("Halvorsen Marine Group: 2024 Annual Results Summary\n\n"
            "Halvorsen Marine Group reported revenue of 14.6 billion kroner.\n\n"
            "Revenue rose while the shipbuilding division delivered eleven vessels and the order book grew\n")
    cd = clean_document(text)
    kinds = [(b.kind, cd.clean.text[b.start:b.end][:20]) for b in cd.blocks]
    assert kinds == [("heading", "Halvorsen Marine Gro"), ("para", "Halvorsen Marine Gro"), ("para", "Revenue rose while t")]
