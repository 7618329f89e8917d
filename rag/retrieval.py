"""Hybrid retrieval: dense (Chroma) + keyword (BM25 over jieba tokens), fused.

Both sides are folded to simplified Chinese and lower case; English questions
get Chinese keyword terms through the CC-CEDICT bridge (rag/crossling).
Exposed as a plain `search()` and as a LlamaIndex `BaseRetriever`.
"""
from __future__ import annotations

import logging
import math
import re
import threading
from pathlib import Path

import numpy as np

from rag.chunking import split_sentences
from rag.lang import detect_lang, to_simplified
from rag.settings import Settings
from rag.text import CJK_RE
from rag.store import ChunkStore
from rag.tokens import STOPWORDS, tokenize  # noqa: F401  (re-exported: the search tokens live there)
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)

def bridge(question: str, vocab=None) -> list[str]:
    """Chinese terms for an English question ([] for Chinese questions); with
    `vocab` (a `rag.crossling.CorpusVocab`) narrowed to the documents' terms."""
    if detect_lang(question) != "en":
        return []
    from rag.crossling import bridge_terms

    return bridge_terms(question, vocab)


def english_terms(tokens: list[str], vocab, idf=None) -> tuple[list[str], float, dict[str, list[str]]]:
    """The documents' English words for a Chinese question's search tokens (none when the
    documents hold no English; `rag.crossling.english_alternatives`), the share of the
    tokens (weighed by `idf`, else counted) that have any: how much of the question the
    English words carry, and each token's own English words."""
    from rag.crossling import english_alternatives

    uniq = list(dict.fromkeys(tokens))
    alts = english_alternatives(uniq, vocab)
    weight = idf or (lambda t: 1.0)
    total = sum(weight(t) for t in uniq) or 1.0
    share = sum(weight(t) for t, a in zip(uniq, alts) if a) / total
    return list(dict.fromkeys(w for a in alts for w in a if w not in uniq)), share, dict(zip(uniq, alts))


def query_tokens(question: str, terms: list[str] | None = None) -> list[str]:
    """Keyword query: the question's own tokens, plus Chinese bridge terms
    when the question is English (pass `terms` when already bridged)."""
    toks = tokenize(question)
    for term in bridge(question) if terms is None else terms:
        toks.extend(tokenize(term))
    return toks


def _with_pieces(toks: list[str], keyword) -> list[str]:
    """The question's tokens, plus the characters of each Chinese token that no document
    holds and that holds no token the documents do: jieba glues words it does not know in
    the question (元详封北海王 -> 详封, 王是) or keeps an idiom whole (一步到位) where the
    documents were cut otherwise, and such a token would match nothing. Its characters
    (minus stopwords) still can. A token with a known word inside (时间跨度: 时间) is left
    alone: that word is searched already, and its other characters are mostly noise."""
    uniq = list(dict.fromkeys(toks))
    unknown = {t for t in uniq if not keyword.doc_freq(t)}
    out, extra = list(toks), []
    for t in uniq:
        if t not in unknown or len(t) < 2 or not all(CJK_RE.match(c) for c in t):
            continue
        if any(k != t and k not in unknown and k in t for k in uniq):
            continue
        extra.extend(c for c in t if c not in STOPWORDS and c not in extra)
    return out + extra


# Coordination (Lucene's classic coord factor, as a bonus): how much of the question's
# weight a candidate holds. BM25 lets a chunk win on a few terms it repeats, and dense
# similarity on topic alone; among the top candidates, the one that holds more of the
# question's distinct terms (by idf) is more often the one that answers it. Chinese
# questions only: an English question's bridge terms are guessed senses, and a chunk
# holding more of the guesses is not more likely right.
# The weight (on the fused scale: dense + keyword weights sum to 1) and the depth are
# Settings.coord_weight / coord_depth.
_LATIN_TERM = re.compile(r"[0-9a-z]")


def coord_terms(toks: list[str], idf) -> list[tuple[str, float]]:
    """The question's distinct search tokens with their idf, leaving out tokens no
    document holds (a token jieba glued in the question matches nothing anyway)."""
    out = []
    for t in dict.fromkeys(toks):
        w = idf(t)
        if w is not None and w > 0:
            out.append((t, w))
    return out


def sentence_texts(text: str, cap: int) -> list[str]:
    """A chunk's first `cap` sentences as the sentence rerank embeds them (the whole text
    when it has none)."""
    return [text[a:b] for a, b in split_sentences(text)][:cap] or [text]


def chunk_body(heading: str, text: str) -> str:
    """A chunk's heading and text as the bonuses below match terms in: simplified, lower-cased."""
    return to_simplified(f"{heading} {text}").lower()


def coord(terms: list[tuple[str, float]], heading: str, text: str) -> float:
    """Share of the terms' idf that the chunk (with its heading) holds, 0..1. A Chinese term
    counts where its characters occur, not only where the chunk's tokeniser cut the same
    word (元详 holds 元 and 详; 封北海王 holds 封); a Latin or number term counts as a whole word."""
    return coord_in(terms, chunk_body(heading, text))


def coord_in(terms: list[tuple[str, float]], body: str) -> float:
    """`coord` over a chunk's `chunk_body`."""
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    return sum(w for t, w in terms if _holds(t, body)) / total


def _word_re(term: str) -> re.Pattern:
    """A Latin or number term as a whole word."""
    return re.compile(rf"(?<![0-9a-z]){re.escape(term)}(?![0-9a-z])")


def _holds(term: str, body: str) -> bool:
    """Whether a chunk body holds a term (a Latin or number term as a whole word)."""
    return bool(_word_re(term).search(body)) if _LATIN_TERM.match(term) else term in body


def _spans(term: str, body: str) -> list[tuple[int, int]]:
    """Where a search term occurs in a chunk body; a Latin or number term only as a whole word."""
    if _LATIN_TERM.match(term):
        return [m.span() for m in _word_re(term).finditer(body)]
    out, i = [], body.find(term)
    while i >= 0:
        out.append((i, i + len(term)))
        i = body.find(term, i + 1)
    return out


def proximity(groups: list[tuple[list[str], float]], body: str, gap: int = 2) -> float:
    """Share of the weight of the question's neighbouring word pairs whose translations the
    (simplified, lower-cased) chunk text holds side by side: in either order ("Battle of
    Sekigahara", 关原之战), at most `gap` characters apart (管理区域, 香港的政府), 0..1.
    `groups` are the question's words in order, each as its alternatives and a weight;
    a pair weighs as its lighter word. Term proximity as Lucene's sloppy phrase queries
    score it, reduced to neighbouring pairs: the dictionary bridge gives each word several
    senses, and two of them standing together in a chunk is where the chunk says what the
    question says (unadministered areas -> 无管理区域, not 管辖 in one sentence and 区域 in
    another)."""
    if len(groups) < 2:
        return 0.0
    spans = [[sp for t in g for sp in _spans(t.lower(), body)] for g, _ in groups]
    total = got = 0.0
    for (_, wa), (_, wb), a, b in zip(groups, groups[1:], spans, spans[1:]):
        w = min(wa, wb)
        total += w
        # side by side, not overlapping (a term and its own longer translation)
        if any(-gap <= y0 - x1 <= gap or -gap <= x0 - y1 <= gap
               for x0, x1 in a for y0, y1 in b if not (x0 < y1 and y0 < x1)):
            got += w
    return got / total if total > 0 else 0.0


def _minmax(values: list[float], floor: float | None = None) -> list[float]:
    """Scale to [0, 1] over the candidates (BM25 from 0: a zero score means no match)."""
    if not values:
        return []
    lo = min(values) if floor is None else floor
    hi = max(values)
    return [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in values]


class Searcher:
    """Hybrid search over the live build; thread-safe to query.

    The keyword index is the build's stored one, memory-mapped (nothing is tokenised
    at start, no chunk text is loaded); chunk texts come from Chroma for the hits only.
    A new build or keyword index written by another process (`rag index`, an upload
    on another replica) is picked up at the next search, without a restart.
    """

    def __init__(self, settings: Settings, store: ChunkStore, embedder):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._lock = threading.RLock()
        self._tmp = None
        self.refresh()

    def refresh(self, store: ChunkStore | None = None) -> None:
        with self._lock:
            if store is not None:
                self.store = store
            keyword = self.store.keyword_index()
            if keyword is None:
                keyword = self._keyword_from_chroma()
            self.keyword = keyword
            self._vocab = None
            self._sentence_memo: dict[str, np.ndarray] = {}  # chunk id -> its sentence vectors
            self._stamp = self._live_stamp()

    def _keyword_from_chroma(self):
        """An index written before keyword indexes were stored: build one in memory
        (a temporary folder), reading Chroma page by page; `rag index` stores it."""
        import tempfile

        from rag.keyword_index import KeywordIndex, NewDoc

        log.warning("the index has no stored keyword index: building one (run `rag index` to store it)")
        self._tmp = tempfile.TemporaryDirectory(prefix="rag-keyword-")
        docs = [NewDoc(c.id, c.source, tokenize(f"{c.heading} {c.text}")) for c in self.store.iter_chunks()]
        return KeywordIndex.build(Path(self._tmp.name) / "keyword", docs)

    def _live_stamp(self):
        index_dir = self.store.build_dir.parent
        try:
            name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
            return name, (index_dir / name / "manifest.json").stat().st_mtime_ns
        except OSError:
            return None

    def reload_if_changed(self) -> bool:
        """Follow CURRENT and the live manifest (one small read and a stat per call)."""
        stamp = self._live_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            s = self.store
            try:
                if stamp[0] != s.build_dir.name:
                    store = ChunkStore.open(s.build_dir.parent, s.manifest.embed_model,
                                            chroma_url=s.chroma_url, page_size=s.page_size)
                else:
                    store = ChunkStore(s.build_dir, ChunkStore.read_manifest(s.build_dir),
                                       chroma_url=s.chroma_url, page_size=s.page_size)
                    store._client, store._collection = s._client, s._collection
                self.refresh(store)
            except Exception as exc:  # half-written by a writer right now: keep serving the old one
                log.warning("index changed but could not be reloaded yet: %s", exc)
                return False
            return True

    # corpus statistics for the extractive answerer (term weights), from the live index
    def __len__(self) -> int:
        return len(self.keyword)

    def doc_freq(self, term: str) -> int:
        return self.keyword.doc_freq(term)

    def idf(self, term: str) -> float:
        """BM25's inverse document frequency of a search token in the live index."""
        n, df = len(self.keyword) or 1, self.keyword.doc_freq(term)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    @property
    def vocab(self):
        """The live index's terms (rag.crossling.CorpusVocab), read on the first English
        question and kept until the index changes."""
        with self._lock:
            if self._vocab is None:
                from rag.crossling import CorpusVocab

                self._vocab = CorpusVocab(self.keyword.vocab, chunks=_ChunkTexts(self.keyword, self.store))
            return self._vocab

    def search(self, question: str, k: int | None = None, variants: list[str] | None = None) -> list[Hit]:
        """Top-k hits for `question`; with `variants` (other renderings of the same question,
        e.g. its LLM translation), each is searched on its own and the lists are fused by
        `fuse_hit_lists` (hits keep the original question's dense/keyword scores when it found them)."""
        k = k or self.settings.top_k
        variants = [v for v in (variants or []) if v and v.strip() and v.strip() != question.strip()]
        weighted = [(v, w) for v in variants if (w := self.variant_weight(question, v)) > 0]
        if not weighted:
            return self._search(question, k)
        depth = max(k, VARIANT_DEPTH)
        lists = [self._search(q, depth) for q in [question, *(v for v, _ in weighted)]]
        return fuse_hit_lists(lists, k, [1.0, *(w for _, w in weighted)])

    def variant_weight(self, question: str, variant: str) -> float:
        """How far a rendering of an English question (its LLM translation) is trusted in the
        fusion: the share of the question's names that the bridge found in the documents
        under a reading (`rag.crossling.bridge_names`: Minoru Endō -> 远藤实) and that the
        variant writes the same way; 1.0 when the bridge found none. A name read from the
        documents is surer than the small model's rendering of it (远藤稔), and a variant
        that misses it ranks passages about something else."""
        if detect_lang(question) != "en":
            return 1.0
        from rag.crossling import bridge_names

        names = bridge_names(question, self.vocab)
        if not names:
            return 1.0
        text = to_simplified(variant).lower()
        return sum(any(t.lower() in text for t in group) for group in names) / len(names)

    def _sentence_rerank(self, ranked: list[tuple[str, float]], fetched: dict, qvec) -> list[tuple[str, float]]:
        """The first `sentence_depth` candidates within `sentence_margin` of the first, each
        raised by sentence_weight x the cosine
        between the question and the chunk's sentence nearest it, and re-ordered (see
        Settings.sentence_weight). A passage's own vector averages all it says; the sentence
        that answers is what the question resembles. The bonus only raises scores, so the head
        still outranks the rest. Each chunk's sentence vectors are kept (a bounded memo per
        searcher: the same passages come back for related questions)."""
        s = self.settings
        depth = min(s.sentence_depth, len(ranked))
        if s.sentence_weight <= 0 or depth < 2:
            return ranked
        # only a near tie is re-read: a candidate further behind the first than
        # `sentence_margin` is not embedded (the sentence cosines of one question's passages
        # differ by a few hundredths, so sentence_weight x that difference rarely bridges more)
        # and only passages in the first one's language: a question's cosine to a sentence in
        # another language runs lower (e5, ~0.15), which would decide for the language, not for
        # the sentence (in a collection of Chinese and English documents, a Chinese question's
        # English answer lost to Chinese passages)
        top = ranked[0][1]
        head = [(cid, sc) for cid, sc in ranked[:depth]
                if fetched.get(cid) is not None and top - sc < s.sentence_margin]
        if len(head) < 2:  # most searches: no near tie, no language to read
            return ranked
        first = fetched.get(ranked[0][0])
        lang = detect_lang(first.text) if first is not None else None
        head = [(cid, sc) for cid, sc in head if detect_lang(fetched[cid].text) == lang]
        if len(head) < 2:
            return ranked
        memo = self._sentence_memo
        have = {cid: v for cid, _ in head if (v := memo.get(cid)) is not None}
        todo: dict[str, list[str]] = {}
        for cid, _ in head:
            if cid not in have:
                todo[cid] = sentence_texts(fetched[cid].text, s.sentence_cap)
        if todo:
            flat = [t for sents in todo.values() for t in sents]
            vecs = np.asarray(self.embedder.embed_passages(flat), dtype=np.float32)
            i = 0
            for cid, sents in todo.items():
                have[cid] = vecs[i:i + len(sents)]
                i += len(sents)
                if len(memo) >= _SENTENCE_MEMO:
                    memo.clear()
                memo[cid] = have[cid]
        q = np.asarray(qvec, dtype=np.float32)
        raised = sorted(((cid, sc + s.sentence_weight * float(np.max(have[cid] @ q))) for cid, sc in head),
                        key=lambda kv: -kv[1])
        kept = {cid for cid, _ in head}
        return raised + [kv for kv in ranked[:depth] if kv[0] not in kept] + ranked[depth:]

    def _search(self, question: str, k: int) -> list[Hit]:
        self.reload_if_changed()
        with self._lock:
            store, keyword = self.store, self.keyword
        if not len(keyword):
            return []
        from rag.crossling import bridge_groups

        # an English question's Chinese terms, by word (the name bonus below reads the groups)
        groups = bridge_groups(question, self.vocab) if detect_lang(question) == "en" else []
        terms = list(dict.fromkeys(t for g in groups for t in g))  # as bridge() flattens them
        # Fusion is a weighted sum of min-max normalised scores over each
        # list's candidates (measured better than reciprocal-rank fusion by
        # bench/fusion.py: rank fusion buries a passage that one retriever is
        # sure of and the other misses). Cross-lingual dense similarity is
        # weak for this model (an English question vs Chinese passages), so
        # English questions lean on the bridged keyword list, and the Chinese
        # bridge terms are also embedded as a second, same-language query.
        s = self.settings
        w_dense = s.dense_weight_crosslingual if terms else s.dense_weight
        queries = [(question, w_dense)]
        english_of: dict[str, list[str]] = {}
        own: list[str] = []  # a Chinese question's own tokens, in order
        if terms:
            queries.append((" ".join(terms), s.bridge_dense_weight))
            qtoks = query_tokens(question, terms)
        else:
            own = tokenize(question)
            qtoks = _with_pieces(own, keyword)
            # a Chinese question over English documents: its terms' English words in them,
            # searched as keywords and embedded as a second, same-language query (as an
            # English question's Chinese terms are)
            english, share, english_of = english_terms(qtoks, self.vocab, self.idf)
            qtoks += english
            if english:
                # weighed by how much of the question the English words carry: 上海 that
                # only Chinese documents name leaves "august released" a weak query
                queries.append((" ".join(english), s.bridge_dense_weight * share))
        vecs = self.embedder.embed_queries([q for q, _ in queries])
        kw = keyword.scores(qtoks)
        kw_order = keyword.top(kw, s.keyword_candidates)
        fused: dict[str, float] = {}
        dense_score: dict[str, float] = {}
        kw_score: dict[str, float] = {}
        for li, (vec, (_, weight)) in enumerate(zip(vecs, queries)):
            dense = store.query_ids(vec, s.dense_candidates)
            for cid, norm in zip((c for c, _ in dense), _minmax([sim for _, sim in dense])):
                fused[cid] = fused.get(cid, 0.0) + weight * norm
            if li == 0:
                dense_score = dict(dense)
        for i, norm in zip(kw_order, _minmax([float(kw[i]) for i in kw_order], floor=0.0)):
            cid = keyword.chunk_id(i)
            fused[cid] = fused.get(cid, 0.0) + (1.0 - w_dense) * norm
            kw_score[cid] = float(kw[i])
        # the bonus reorders the first coord_depth candidates whatever k is, so a longer list
        # starts with the shorter one (it used to run only for k < coord_depth: a search for
        # 20 or more hits, as the gate's fit script makes, ranked without it)
        use_coord = not terms and s.coord_weight > 0 and s.coord_depth > 0
        # an English question: the names it bridged to (a proper noun of the dictionary,
        # Wuhan -> 武汉, or a reading the documents hold, Minoru Endō -> 远藤实), its surest
        # terms, take the coordination bonus's place
        names: list[list[str]] = []
        if terms and s.coord_weight > 0 and s.coord_depth > 0:
            from rag.crossling import bridge_names, is_proper_noun

            names = [g for g in groups if any(is_proper_noun(t) for t in g)]
            names += [g for g in bridge_names(question, self.vocab) if g not in names]
        # the question's words as read through the dictionary, in order (an English question's
        # Chinese terms; a Chinese question's English words in English documents): neighbours
        # a chunk holds side by side take the proximity bonus. Each word weighs as its rarest
        # reading the documents hold. A Chinese question's own words are not read this way:
        # BM25 already matches its phrases, and measured, the bonus only answered an on-topic
        # passage that echoed them.
        pairs: list[tuple[list[str], float]] = []
        if s.proximity_weight > 0 and s.coord_depth > 0:
            read = groups if terms else [english_of.get(t, []) for t in dict.fromkeys(own)]
            pairs = [(g, w) for g in read
                     if (w := max((self.idf(t) for t in g if keyword.doc_freq(t)), default=0.0)) > 0]
            if len(pairs) < 2:
                pairs = []
        use_english = bool(terms) and bool(names or pairs)
        depth = max(k, s.coord_depth) if (use_coord or use_english) else k
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:depth]
        # texts and offsets of these few ids: stored with the keyword index (a second call to
        # Chroma cost a third of a search at 100k chunks); from Chroma for any it lacks
        pos = {cid: keyword.doc_index(cid) for cid, _ in ranked}
        fetched = {cid: keyword.chunk(j) for cid, j in pos.items() if j is not None}
        missing = [cid for cid, _ in ranked if fetched.get(cid) is None]
        if missing:
            fetched.update(store.get(missing))
        if use_coord or use_english:
            # an empty index leaves no term with a document frequency, so no terms
            cterms = coord_terms(qtoks, lambda t: self.idf(t) if keyword.doc_freq(t) else None) if use_coord else []

            def bonus(c: Chunk) -> float:
                body = chunk_body(c.heading, c.text)
                if use_coord:
                    held = coord_in(cterms, body)
                else:
                    held = sum(any(_holds(t.lower(), body) for t in g) for g in names) / len(names) if names else 0.0
                return s.coord_weight * held + s.proximity_weight * proximity(pairs, body)

            if cterms or use_english:
                head = sorted(((cid, sc + bonus(fetched[cid]) if fetched.get(cid) is not None else sc)
                               for cid, sc in ranked[:s.coord_depth]), key=lambda kv: -kv[1])
                # the bonus only raises scores, so the head still outranks the rest
                ranked = head + ranked[s.coord_depth:]
            ranked = ranked[:k]
        # A passage only the keyword list found has no cosine from the dense search (in a
        # collection of two languages, a Chinese question's dense candidates can all be
        # Chinese): its similarity is read from its stored vector, so the gate judges it by
        # its own cosine and not by a stand-in.
        lacking = [cid for cid, _ in ranked if cid not in dense_score and fetched.get(cid) is not None]
        if lacking:
            q0 = np.asarray(vecs[0], dtype=np.float32)
            try:
                stored = store.vectors(lacking)
            except Exception as exc:  # noqa: BLE001 - an index run in another process is
                # replacing these ids right now (Chroma: "Error finding id"): the hits keep no
                # cosine, as before, rather than the search failing
                log.debug("stored vectors not read: %s", exc)
                stored = {}
            for cid, v in stored.items():
                dense_score[cid] = float(np.dot(v, q0))
        ranked = self._sentence_rerank(ranked, fetched, vecs[0])
        hits = []
        for cid, score in ranked:
            chunk = fetched.get(cid)
            if chunk is None:  # removed by an index run since the keyword index was read
                continue
            kws = kw_score.get(cid)
            if kws is None:
                j = pos[cid]
                kws = None if j is None else float(kw[j])
            hits.append(Hit(chunk, score, len(hits) + 1, dense_score.get(cid), kws))
        return hits


class _ChunkTexts:
    """The keyword index's term positions and chunk texts for the English bridge
    (rag.crossling.CorpusVocab); texts an older keyword index lacks come from Chroma."""

    def __init__(self, keyword, store: ChunkStore):
        self.keyword, self.store = keyword, store
        self.n_positions = keyword.n_positions

    def positions(self, term: str):
        return self.keyword.positions(term)

    def texts(self, positions: list[int]) -> list[str | None]:
        out = self.keyword.texts(positions)
        missing = {self.keyword.chunk_id(i): n for n, (i, t) in enumerate(zip(positions, out)) if t is None}
        if missing:
            for cid, c in self.store.get(list(missing)).items():
                out[missing[cid]] = f"{c.heading} {c.text}"
        return out


VARIANT_DEPTH = 20  # hits taken from each query variant's list before fusing
_SENTENCE_MEMO = 512  # chunks whose sentence vectors a searcher keeps (~9 MB at most)


def fuse_hit_lists(lists: list[list[Hit]], k: int, weights: list[float] | None = None) -> list[Hit]:
    """Fuse ranked hit lists of query variants: a weighted sum of each list's min-max normalised
    scores (the same kind of fusion `Searcher` uses inside one query, measured against
    reciprocal-rank fusion in bench/query_translation.py). A chunk keeps the Hit of the first
    list that holds it, with the fused score and its new rank."""
    weights = weights or [1.0] * len(lists)
    fused: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits, weight in zip(lists, weights):
        for hit, norm in zip(hits, _minmax([h.score for h in hits], floor=0.0)):
            fused[hit.chunk.id] = fused.get(hit.chunk.id, 0.0) + weight * norm
            first.setdefault(hit.chunk.id, hit)
    ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    # on the scale of the first (original) query's scores, so a fused hit reads like a plain one
    scale = (max((h.score for h in lists[0]), default=1.0) if lists else 1.0) / (sum(weights) or 1.0)
    out = []
    for rank, (cid, score) in enumerate(ranked, start=1):
        h = first[cid]
        out.append(Hit(h.chunk, score * scale, rank, h.dense_score, h.keyword_score))
    return out


def make_llama_retriever(searcher: Searcher, k: int):
    """A LlamaIndex BaseRetriever over the hybrid search (built lazily so that
    importing rag does not import llama_index)."""
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    class HybridRetriever(BaseRetriever):
        """Dense + BM25 hybrid retriever over the assistant's Chroma index."""

        def __init__(self, searcher: Searcher, similarity_top_k: int = 5):
            super().__init__()
            self._searcher = searcher
            self.similarity_top_k = similarity_top_k

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            hits = self._searcher.search(query_bundle.query_str, self.similarity_top_k)
            return [
                NodeWithScore(
                    node=TextNode(
                        id_=h.chunk.id,
                        text=h.chunk.text,
                        metadata={
                            "source": h.chunk.source,
                            "start": h.chunk.start,
                            "end": h.chunk.end,
                            "heading": h.chunk.heading,
                            "rank": h.rank,
                        },
                    ),
                    score=h.score,
                )
                for h in hits
            ]

    return HybridRetriever(searcher, k)
