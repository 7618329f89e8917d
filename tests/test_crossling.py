"""rag.crossling: English question -> simplified-Chinese BM25 terms."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag import crossling
from rag.crossling import bridge_terms

REPO = Path(__file__).resolve().parent.parent


def test_shanghai_august():
    terms = bridge_terms("What did Shanghai announce in August?")
    assert "上海" in terms
    assert "8月" in terms
    assert "发布" in terms  # "announce" via lemma + dictionary, not left in English


def test_global_market_from_dictionary():
    terms = bridge_terms("How large was the global industrial AI market in 2024?")
    assert "市场" in terms or "市场规模" in terms
    assert "全球" in terms
    assert "2024" in terms  # years stay as digits


def test_multiword_phrases_from_dictionary():
    # phrases CC-CEDICT defines exactly (there is no hand glossary)
    assert bridge_terms("foreign trade")[0] == "外贸"
    assert bridge_terms("labor force")[0] == "劳动力"
    assert bridge_terms("the State Council")[0] == "国务院"
    assert bridge_terms("artificial intelligence") == ["人工智能"]


def test_common_word_ranked_first():
    assert bridge_terms("market")[0] == "市场"
    assert "制造" in bridge_terms("manufacturing")
    assert bridge_terms("risk")[0] == "风险"


def test_corpus_vocabulary_narrows_translations():
    """A translation the documents use beats a commoner one they do not."""
    from rag.crossling import CorpusVocab

    plain = bridge_terms("Which bureau was set up?")
    assert "公安局" not in plain
    vocab = CorpusVocab({"公安局", "设立", "人工智能"})
    narrowed = bridge_terms("Which bureau was set up?", vocab)
    assert "公安局" in narrowed
    assert all(t in vocab or t.isascii() for t in narrowed)
    # nothing in the vocabulary: the dictionary's own choice stays
    assert bridge_terms("market", CorpusVocab({"无关"}))[0] == "市场"


@pytest.mark.parametrize(
    "question,term",
    [
        ("Where was Feng Zuxun born?", "冯祖荀"),
        ("Who is Zhao Yiping?", "赵一萍"),
        ("How many people live in Shenzhen?", "深圳"),
        ("What did Wang Xiaoming write?", "王晓明"),
    ],
)
def test_names_in_pinyin_match_document_terms(question, term):
    from rag.crossling import CorpusVocab

    vocab = CorpusVocab({term, "出生", "人口", "写作", "其他词"})
    assert term in bridge_terms(question, vocab)


def test_pinyin_needs_a_capitalised_name():
    from rag.crossling import CorpusVocab

    vocab = CorpusVocab({"龙", "弄", "方法"})  # "long" reads as 龙, but is an English word here
    assert "龙" not in bridge_terms("How long was it?", vocab)


def test_light_lemmatisation():
    assert bridge_terms("markets")[0] == "市场"
    assert "城市" in bridge_terms("cities")
    assert "投资" in bridge_terms("invested")
    assert "发布" in bridge_terms("announced")
    assert "企业" in bridge_terms("companies")


def test_months_numbers_and_may():
    assert bridge_terms("in May") == ["5月"]
    terms = bridge_terms("What happened in September 2025?")
    assert terms[-2:] == ["9月", "2025"] and "September" not in terms
    assert "93%" in bridge_terms("Is it 93% of firms?")
    # the modal verb is not the month
    assert "5月" not in bridge_terms("what may happen to markets")


def test_us_country_vs_pronoun():
    assert "美国" in bridge_terms("compared with the US")
    assert "美国" not in bridge_terms("tell us about markets")


@pytest.mark.parametrize(
    "name,zh",
    [
        ("Shanghai", "上海"), ("Beijing", "北京"), ("Zhejiang", "浙江"), ("Wenzhou", "温州"),
        ("Guangxi", "广西"), ("Anhui", "安徽"), ("Sichuan", "四川"), ("Hebei", "河北"),
        ("Shenzhen", "深圳"), ("Guizhou", "贵州"), ("Wuhan", "武汉"), ("Suzhou", "苏州"),
        ("Chengdu", "成都"), ("Hangzhou", "杭州"), ("Hefei", "合肥"), ("Guangzhou", "广州"),
    ],
)
def test_places_resolve(name, zh):
    # a CC-CEDICT proper noun is matched by its pinyin spelling
    assert bridge_terms(f"What did {name} do?")[0] == zh


def test_stopwords_and_question_words_dropped():
    assert bridge_terms("What is the? Where, when, who, how and why did they do it?") == []
    terms = bridge_terms("What are the risks?")
    assert terms and all(not t.isascii() for t in terms)
    assert terms[0] == "风险"


def test_chinese_question_gives_nothing_to_add():
    assert bridge_terms("上海8月发布了什么？") == []
    assert bridge_terms("全國首個市級人工智能管理機構在哪裡？") == []
    assert bridge_terms("") == []
    # mixed: only the English part is bridged
    assert bridge_terms("上海的 market") == ["市场", "销售", "推销"][: len(bridge_terms("上海的 market"))]
    assert bridge_terms("上海的 market")[0] == "市场"


def test_second_call_much_faster_than_first(monkeypatch):
    monkeypatch.setattr(crossling, "_INDEX", None)
    t0 = time.perf_counter()
    first = bridge_terms("What did Shanghai announce in August?")
    t1 = time.perf_counter()
    for _ in range(20):
        again = bridge_terms("How large was the global industrial AI market in 2024?")
    t2 = time.perf_counter()
    assert first and again
    per_call = (t2 - t1) / 20
    assert per_call * 20 < (t1 - t0), (t1 - t0, per_call)


def test_data_comes_from_installed_package():
    import importlib.util

    path = Path(crossling.cedict_path())
    spec = importlib.util.find_spec(crossling.CEDICT_PACKAGE)
    assert spec is not None
    assert any(path.is_relative_to(loc) for loc in spec.submodule_search_locations)
    assert "site-packages" in path.parts  # an installed package, not vendored
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        head = fh.read(2000)
    assert "CC-CEDICT" in head and "creativecommons.org/licenses/by-sa/4.0" in head
    assert not any((REPO / "rag").glob("**/cedict*")), "no vendored copy of CC-CEDICT"


def test_index_build_and_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("RAG_CROSSLING_NO_CACHE", raising=False)
    built = crossling._load_index()  # builds from the package file, writes the cache
    files = list(tmp_path.rglob("*.marshal"))
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000
    loaded = crossling._load_index()  # from the cache
    # a fresh build answers exactly as its cache will: a machine's first run and every
    # later one bridge alike (the raw build ordered ties and long postings otherwise)
    assert loaded.phrase == built.phrase and loaded.word == built.word
    for idx in (built, loaded):
        assert crossling._lookup_phrase("state council", idx)[0] == "国务院"
        assert crossling._lookup_word("market", idx)[0] == "市场"
        assert crossling._lookup_word("cities", idx) == crossling._lookup_word("cities", built)
    # a corrupt cache is ignored and rebuilt
    files[0].write_bytes(b"garbage")
    again = crossling._load_index()
    assert crossling._lookup_phrase("state council", again)[0] == "国务院"
    assert files[0].stat().st_size > 1_000_000  # written again


def test_japanese_readings_are_built_once_per_machine(tmp_path, monkeypatch):
    # building the table loads pykakasi's whole kanji dictionary (1.6 s, ~150 MB kept by
    # every process that read an English name); later processes read the small table
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("RAG_CROSSLING_NO_CACHE", raising=False)
    crossling._japanese_readings.cache_clear()
    try:
        built = crossling._japanese_readings()
        files = list(tmp_path.rglob("ja-readings-*.marshal"))
        assert len(files) == 1 and "minoru" in built[ord("实")]
        crossling._japanese_readings.cache_clear()
        monkeypatch.setattr(crossling, "_build_japanese_readings", lambda: pytest.fail("built again"))
        assert crossling._japanese_readings() == built
        files[0].write_bytes(b"garbage")  # a corrupt cache is rebuilt, not trusted
        crossling._japanese_readings.cache_clear()
        monkeypatch.setattr(crossling, "_build_japanese_readings", lambda: {1: ("x",)})
        assert crossling._japanese_readings() == {1: ("x",)}
    finally:
        crossling._japanese_readings.cache_clear()


# ---- what the documents themselves tell the bridge ------------------------------------

from rag.crossling import CorpusVocab, bridge_groups, bridge_groups_sourced  # noqa: E402


def test_diacritics_are_folded_in_question_words():
    toks = [low for _, low in crossling._tokens("Chūzan Seifu, Krstajić and Đông Sơn")]
    assert toks == ["chuzan", "seifu", "krstajic", "and", "dong", "son"]
    assert crossling.latin_key("Endō") == "endo"


def test_name_cut_in_pieces_by_the_tokeniser_is_read_from_the_text():
    # jieba cuts the rare name 罗彦瓌 into 罗彦 + 瓌: no single term reads "luoyangui"
    texts = ["罗彦瓌（923年－969年），太原人，北宋时军事将领。", "洛阳归来的人很多。", "其他内容"]
    vocab = CorpusVocab.from_texts(texts)
    assert "罗彦瓌" not in vocab and "罗彦" in vocab
    assert bridge_groups("Where was Luo Yangui from?", vocab) == [["罗彦瓌"]]
    # without the texts (terms only) the name cannot be found
    assert "罗彦瓌" not in bridge_terms("Where was Luo Yangui from?", CorpusVocab(vocab.terms))
    # a run must start and end where the tokeniser cuts: 洛阳归 is half of 洛阳 + 归来
    assert not any("洛阳归" in t for t in bridge_terms("Who was Luo Yanggui?", vocab))


def test_sino_vietnamese_readings_match_document_terms():
    vocab = CorpusVocab.from_texts(["东山文化是越南北部的史前文化。", "越服是越南的传统服饰。", "山东是中国的省份。"])
    groups = bridge_groups("When did the Dong Son culture flourish?", vocab)
    assert "东山" in groups[0]
    # Vietnamese writes the second syllable of a common noun in lower case
    assert ["越服"] in bridge_groups("Which clothing does Việt phục resemble?", vocab)
    # an English word that happens to be a reading is not taken unless a term reads so
    assert not any("山东" in g for g in groups)


def test_japanese_names_match_by_their_japanese_reading():
    vocab = CorpusVocab.from_texts(["远藤实（），二战后日本歌谣界最具代表性的作曲家之一，曾写下五千多首作品。",
                                    "东京是日本的首都。", "远藤是一个姓氏。"])
    # given name first, as English writes it; long vowel marked, or not
    assert "远藤实" in bridge_terms("How many works did Minoru Endō write?", vocab)
    assert "远藤实" in bridge_terms("How many works did Minoru Endo write?", vocab)
    assert vocab.japanese("tokyo") == ["东京"]
    # one word alone is not read in Japanese: "Kenji" would read as common words (检事)
    common = CorpusVocab.from_texts(["这是检事的工作。"])
    assert common.japanese("kenji") == ["检事"]
    assert "检事" not in bridge_terms("In which magazine was Yasuko to Kenji serialized?", common)
    # traditional and Japanese forms of the kanji read the same
    assert crossling._reads_as("遠藤實", "endominoru", crossling._japanese_readings())
    assert crossling._reads_as("遠藤実", "endominoru", crossling._japanese_readings())
    # no term of the documents reads so: nothing made up
    assert not any("远藤" in t for t in bridge_terms("How many works did Minoru Tanaka write?", vocab))
    assert vocab.japanese("tanakaminoru") == []
    # a name the tokeniser cut in two: each word reads as one of the pieces
    cut = CorpusVocab.from_texts(["现存的中山世谱共有本卷14卷。", "中山是一个地名。", "世谱"])
    assert "中山世谱" not in cut
    terms = bridge_terms("How many volumes does the Chuzan Seifu have?", cut)
    assert "中山" in terms and "世谱" in terms


def test_latin_name_in_another_form_matches_the_documents_term():
    vocab = CorpusVocab.from_texts(["半甲齿龟属于齿龟科（Odontochelyidae），化石发现于贵州。",
                                    "维也纳奥古斯丁教堂（德语：Augustinerkirche）", "odor odyssey"])
    assert "odontochelyidae" in bridge_terms("How long was Odontochelys?", vocab)
    assert "augustinerkirche" in bridge_terms("When was the Augustinian Church built?", vocab)
    assert vocab.latin_near("odometer") == []      # shares only "odo": no stem in common
    assert vocab.latin_near("odont") == []         # too short to judge
    # without a vocabulary the word stays as written
    assert "odontochelys" in bridge_terms("How long was Odontochelys?", CorpusVocab({"齿龟"}))


def test_sense_of_an_ambiguous_word_follows_what_the_documents_say_with_the_others():
    texts = ["深圳体育场可容纳32500名观众，是一座综合体育场。",
             "运动会在北京举行，开幕式于8月举行。", "公司举办了一次年会。", "他保持了纪录。"]
    vocab = CorpusVocab.from_texts(texts)
    q = "How many spectators can Shenzhen Stadium hold?"
    hold = bridge_groups(q, vocab)[-1]
    assert "容纳" in hold
    # without the chunks, the dictionary's order among the documents' terms decides
    assert "容纳" not in bridge_groups(q, CorpusVocab(vocab.terms))[-1]


def test_loanwords_are_not_treated_as_rare_senses():
    # CC-CEDICT marks 俱乐部 "(loanword)": a common modern word, not a classical one
    assert bridge_terms("club")[0] == "俱乐部"


@pytest.mark.parametrize("british, term", [("specialise in", "专攻"), ("labour force", "劳动力")])
def test_british_spelling_of_a_phrase_finds_the_dictionarys_sense(british, term):
    # CC-CEDICT writes its senses in American spelling; a phrase is looked up whole, so
    # "specialise in" must be read as "specialize in" (one word alone already was)
    groups = bridge_groups_sourced(f"What did she {british}?", None)
    assert any(term in g for g, _ in groups), groups


def test_one_british_spelling_rule_for_words_and_phrases():
    from rag.crossling import _american, _lemma_candidates

    for british, american in [("labour", "labor"), ("colourful", "colorful"), ("neighbourhood", "neighborhood"),
                              ("favourite", "favorite"), ("specialised", "specialized"), ("organises", "organizes"),
                              ("organisation", "organization"), ("programmes", "programs")]:
        assert _american(british) == american and american in _lemma_candidates(british)
    for word in ("four", "hour", "your", "tour", "flour", "source", "journal", "rise", "honest", "mammal", "gramme"):
        assert _american(word) == word  # not British forms
        assert all("or" not in c or "or" in word for c in _lemma_candidates(word))
    assert _american("labour force") == "labor force"


def test_western_name_matches_its_transliteration_by_sound():
    # Chinese writes a Western name by sound (Spalletti = 斯帕莱蒂, also 史巴列堤): no
    # dictionary has it, the documents' runs are compared with the name's sound classes
    texts = ["卢西亚诺·斯帕莱蒂，是意大利足球主教练。史巴列堤于1959年出生。",
             "杰里米·布罗基在新西兰足球俱乐部效力。", "他们拜访了市场，排放量很大。"]
    vocab = CorpusVocab.from_texts(texts)
    terms = bridge_terms("Where did Spalletti begin his coaching career?", vocab)
    assert "斯帕莱蒂" in terms and "史巴列堤" in terms  # 史巴列 + 堤: extended in the text
    assert "布罗基" in bridge_terms("Which club did Brockie sign for?", vocab)
    # the gate's name check reads the same groups
    groups = crossling.bridge_groups_sourced("Spalletti", vocab)
    assert groups[0][1] == ["spalletti"] and "斯帕莱蒂" in groups[0][0]
    # a word that is not a name (lower case) or is a dictionary word is not read by sound,
    # and a common word that sounds alike (拜访 bai-fang for "Pavano") is no name
    assert not any("斯帕" in t for t in bridge_terms("where did spalletti begin?", vocab))
    assert vocab.transliterations("Pavano") == []
    # a dissimilar name, or one too short to judge, finds nothing
    assert vocab.transliterations("Kowalski") == []
    assert vocab.transliterations("Spa") == []


def test_transliteration_sound_classes():
    sim = crossling.xlit_similarity
    sk, hk = crossling.latin_skeleton, crossling.han_skeleton
    assert sk("Spalletti")[:2] == ("S", "P")  # "ll", "tt" read once, voicing not kept apart
    assert sim(sk("Spalletti"), hk("斯帕莱蒂")) > sim(sk("Spalletti"), hk("史巴列堤")) > 0.85
    assert sim(sk("Kamehameha"), hk("卡美哈梅哈")) == 1.0
    assert sim(sk("Mladen"), hk("姆拉登")) > 0.9 > sim(sk("Mladen"), hk("密尔顿"))
    assert sim(sk("Spalletti"), hk("市场")) < 0.5


def test_a_noun_the_dictionary_defines_only_inside_names_is_bridged_by_their_last_character():
    """"bureau" is in CC-CEDICT as 公安局 "public security bureau", 地震局 "earthquake
    bureau" …, and alone only as 署 or 办公室: documents that write 人工智能局 (jieba: 人工智能 /
    局) are found by the character those names share, learnt from the dictionary."""
    from rag.crossling import CorpusVocab

    assert crossling._head_morpheme("bureau", {"公安局", "地震局", "安全局", "气象局", "分社"}) == "局"
    # the longer shared ending wins (大学, not 学); too few names, or no shared ending: none
    assert crossling._head_morpheme("university", {"北京大学", "复旦大学", "南开大学", "同济大学"}) == "大学"
    assert crossling._head_morpheme("bureau", {"公安局", "地震局", "安全局"}) is None
    assert crossling._head_morpheme("level", {"上游", "下级", "低层", "中游", "高阶"}) is None
    vocab = CorpusVocab({"局", "人工智能", "城市"})
    assert ["局"] in crossling.bridge_groups("Which city set up the AI bureau?", vocab)
    # only a stand-in: a translation of the word itself that the documents hold comes first
    vocab = CorpusVocab({"局", "办公室"})
    assert crossling.bridge_groups("the bureau", vocab) == [["办公室"]]


def test_an_abbreviation_is_read_as_the_dictionary_abbreviates():
    # CC-CEDICT writes an abbreviation in parentheses after the words it abbreviates
    assert crossling._acronyms("artificial intelligence (AI)") == ["AI"]
    assert crossling._acronyms("World Trade Organization (WTO)") == ["WTO"]
    # a parenthetical that tags a context is not one: its initials do not spell it
    assert crossling._acronyms("Pau Gasol (1980-), Spanish basketball player (NBA)") == []
    # "AI" as written is 人工智能, not the surname Ai (艾) the lower-cased word would find
    terms = bridge_terms("Which city set up the first AI bureau?")
    assert "人工智能" in terms and not any(t.startswith("艾") for t in terms)
    # documents that keep the abbreviation are searched by it too
    from rag.crossling import CorpusVocab

    vocab = CorpusVocab({"ai", "人工智能", "城市"})
    groups = crossling.bridge_groups("Which city set up the first AI bureau?", vocab)
    assert ["ai", "人工智能"] in groups


# ---- Chinese questions over English documents -------------------------------------

_ENGLISH_DOCS = [
    "Halvorsen Marine Group reported revenue of 14.6 billion kroner for 2024.",
    "The company opened a new shipyard in Gdansk, Poland, and its chief executive said the city council approved the plan.",
    "Emperor Shenzong appointed Wang Anshi to lead the reforms in 1069.",
]


def test_a_chinese_question_gets_the_english_words_the_documents_use():
    from rag.crossling import english_alternatives

    vocab = CorpusVocab.from_texts(_ENGLISH_DOCS)
    toks = ["哈尔", "沃森", "公司", "收入", "神宗", "王安石", "波兰"]
    got = dict(zip(toks, english_alternatives(toks, vocab)))
    # the dictionary read backwards, narrowed to the documents' words
    assert "company" in got["公司"] and "revenue" in got["收入"] and got["波兰"] == ["poland"]
    # a name by its pinyin, a personal name also by its given name
    assert got["神宗"] == ["shenzong"] and got["王安石"] == ["anshi"]
    # a Western name the tokeniser cut into two untranslated pieces, read back whole
    assert got["哈尔"] == got["沃森"] == ["halvorsen"]


def test_english_alternatives_are_empty_over_chinese_documents():
    from rag.crossling import english_alternatives

    vocab = CorpusVocab.from_texts(["哈尔沃森公司公布了收入。"])
    assert english_alternatives(["公司", "收入"], vocab) == [[], []]
    assert english_alternatives(["公司"], None) == [[]]


def test_british_spellings_ending_in_re_are_looked_up_in_american():
    from rag.crossling import _american_word

    assert [_american_word(w) for w in ("fibre", "centres", "metre", "theatre", "centred")] == [
        "fiber", "centers", "meter", "theater", "centered"]
    # no t or b before the "re": not a British form
    assert [_american_word(w) for w in ("acre", "genre", "ogre", "massacre", "tree")] == [
        "acre", "genre", "ogre", "massacre", "tree"]


def test_warm_builds_the_backward_bridge_only_for_documents_with_english():
    en = CorpusVocab.from_texts(_ENGLISH_DOCS)
    en.warm()
    assert en._glosses and "company" in dict(en._glosses["公司"]) and en._latin_xlit
    zh = CorpusVocab.from_texts(["上海发布了人工智能计划。"])
    zh.warm()
    assert zh._glosses is None and zh._latin_xlit is None


def test_a_sense_of_several_words_reads_backwards_when_the_documents_use_all_of_them():
    vocab = CorpusVocab.from_texts(["The company's net profit fell.", "Vienna is the capital of Austria."])
    glosses = vocab.glosses()
    assert {"net", "profit"} <= dict(glosses["净利润"]).keys()
    # the first word of a sense is its most definitional: Vienna's, not Austria's
    assert vocab.english_for("维也纳")[0] == "vienna"


def test_a_chinese_month_is_read_back_as_the_month_not_the_word_month():
    from rag.crossling import english_alternatives

    vocab = CorpusVocab.from_texts(["Shanghai released a plan in August, months after March."])
    got = english_alternatives(["上海", "8", "月", "发布"], vocab)
    assert got[1] == got[2] == ["august"] and got[0] == ["shanghai"]
    assert english_alternatives(["三月"], vocab) == [["march"]]


@pytest.mark.parametrize("question, term", [
    ("What did the Prussian army do?", "普鲁士"),      # CC-CEDICT has Prussia, not Prussian
    ("Who was the Chilean president?", "智利"),
    ("When did the Napoleonic Wars end?", "拿破仑"),
    ("What is the largest organelle?", "大型"),       # a superlative's base
    ("What is its elemental composition?", "元素"),   # an adjective's noun
])
def test_a_superlative_or_an_adjective_of_a_name_is_bridged_by_its_base(question, term):
    vocab = CorpusVocab({"普鲁士", "智利", "拿破仑", "大型", "细胞器", "七人", "总统", "军队", "战争", "元素", "组成"})
    assert any(term in g for g, _ in bridge_groups_sourced(question, vocab))


def test_a_word_the_dictionary_translates_is_not_read_as_a_name():
    # "China" read as Wade-Giles (chih-na) matches 支那; the dictionary says 中国. "Chilean"
    # read so matched 七人. A reading is for names the dictionary does not know.
    vocab = CorpusVocab({"支那", "中国", "七人", "智利", "开始"})
    groups = dict((w[0], g) for g, w in bridge_groups_sourced("When did China begin? Who is Chilean?", vocab))
    assert "中国" in groups["china"] and "支那" not in groups["china"]
    assert "智利" in groups["chilean"] and "七人" not in groups["chilean"]
    # a name the dictionary lacks is still read by its pinyin
    assert "冯祖荀" in bridge_terms("Who is Feng Zuxun?", CorpusVocab({"冯祖荀", "数学"}))


@pytest.mark.parametrize("question, term", [
    ("Where did Liu Wai-hung's ancestors come from?", "廖伟雄"),   # Hong Kong: Cantonese romanisation
    ("What is in Kaohsiung?", "高雄"),                            # Taiwan: Wade-Giles
    ("Who founded Chung Hsing University?", "中兴"),
])
def test_names_written_in_wade_giles_or_cantonese_match_document_terms(question, term):
    vocab = CorpusVocab({"廖伟雄", "高雄", "中兴", "大学", "祖辈", "出口"})
    assert term in bridge_terms(question, vocab)


def test_cantonese_and_wade_giles_tables_are_read():
    from rag.crossling import _cantonese_readings, _wade_giles_readings

    wg, canto = _wade_giles_readings(), _cantonese_readings()
    assert "hsiung" in wg[ord("雄")] and "kao" in wg[ord("高")]
    # the package's table is keyed by traditional characters; the simplified form reads the same
    assert "wai" in canto[ord("偉")] and "wai" in canto[ord("伟")]


def test_a_proper_nouns_english_forms_before_its_description_are_senses():
    # CC-CEDICT: 萨克森 /Sachsen or Saxony, Bundesland in east of Germany, .../ -- one long
    # sense, which was skipped whole; its forms before the comma are senses of their own
    from rag.crossling import _sense_forms

    assert _sense_forms("sachsen or saxony, bundesland in east of germany") == ["sachsen", "saxony"]
    assert _sense_forms("to hold") == []
    # a form of several words is a sense too (全国运动会 /National Games, Chinese athletics
    # competition, .../), a possessive read as a question's words are; not one spelling the
    # headword's pinyin, which the pinyin reading has
    assert _sense_forms("national games, chinese athletics competition") == ["national games"]
    assert _sense_forms("children's day, prc national holiday for children under 14") == ["children day"]
    assert _sense_forms("wang anshi, song dynasty politician", "wanganshi") == []
    vocab = CorpusVocab({"萨克森", "下萨克森", "宗教", "少数"})
    assert "萨克森" in bridge_terms("Which religion is a minority in Lower Saxony?", vocab)


def test_a_regnal_number_after_a_name_is_read_in_chinese():
    from rag.crossling import _regnal_number

    assert _regnal_number("III", "Napoleon") == ["三世", "三"]
    assert _regnal_number("XIV", "Louis") == ["十四世", "十四"]
    # not a numeral after a name: a pronoun, an acronym, a word at the start
    assert _regnal_number("I", "Napoleon") == [] and _regnal_number("CD", "The") == []
    assert _regnal_number("III", "") == []
    groups = bridge_groups_sourced("When did Napoleon III surrender?", CorpusVocab({"拿破仑", "三世", "投降"}))
    assert any("三世" in g for g, _ in groups)


def test_an_ordinal_in_digits_is_one_number_word():
    # "11th" was cut into 11 and a stray "th", a word no document holds that the gate counted
    # as missing; it is the number, also as Chinese writes ordinals (第十一届)
    groups = dict((w[0], g) for g, w in bridge_groups_sourced(
        "Where were the 11th National Games held in the 23rd year, with 2,500 athletes?",
        CorpusVocab({"全国", "运动会", "举行", "第十一", "运动员"})))
    assert groups["11th"] == ["11", "第十一", "第11", "十一"]
    assert groups["23rd"][:2] == ["23", "第二十三"]
    assert groups["2,500"] == ["2500"]
    assert not {"th", "rd"} & set(groups)


def test_a_word_read_apart_from_its_spelling_keeps_it_inside_a_phrase():
    # "US" alone is the country (read as usa, not the pronoun), but "US dollar" is the
    # dictionary's phrase for the currency, 美元, not 美国 and 美元 side by side
    vocab = CorpusVocab({"美元", "美国", "人民币", "浮动", "军队", "美军"})
    groups = bridge_groups("How far may the renminbi float against the US dollar?", vocab)
    assert ["美元"] in groups and not any("美国" in g for g in groups)
    assert any("美国" in g for g in bridge_groups("Where is the US embassy?", vocab))


def test_a_japanese_place_name_is_read_without_its_particle():
    # 関ヶ原 is Sekigahara in English and 关原 in Chinese: the small ヶ (ga) is dropped
    from rag.crossling import _japanese_without_particle

    vocab = CorpusVocab({"关原", "之战", "赢家", "霞关", "香蕉"})
    assert "关原" in bridge_terms("Who won the Battle of Sekigahara?", vocab)
    assert _japanese_without_particle("kasumigaseki", vocab) == ["霞关"]
    assert _japanese_without_particle("banana", vocab) == []


def test_a_superlative_is_also_read_as_most_and_its_base():
    # Chinese says 最大 / 最早 where English says largest / earliest
    vocab = CorpusVocab({"最大", "最早", "岛屿", "记录", "利息率"})
    groups = dict((w[0], g) for g, w in bridge_groups_sourced(
        "Which island is the largest? What is the earliest record?", vocab))
    assert groups["largest"][0] == "最大" and groups["earliest"][0] == "最早"
    # words that only end like a superlative are left alone
    assert not any("最" in t for g, _ in bridge_groups_sourced("the interest rate", vocab) for t in g)


@pytest.mark.parametrize("question, word, term", [
    ("Which regime was overthrown?", "overthrown", "推翻"),   # irregular participle (lemminflect)
    ("Which country's army used it?", "used", "使用"),        # four letters: the suffix rules skip it
    ("Where were the children?", "children", "儿童"),
])
def test_irregular_and_short_inflections_reach_the_dictionarys_sense(question, word, term):
    vocab = CorpusVocab({"推翻", "政权", "使用", "国家", "军队", "儿童", "中古"})
    groups = dict((w[0], g) for g, w in bridge_groups_sourced(question, vocab))
    assert term in groups[word]


def test_a_negated_word_without_a_sense_is_bridged_by_its_base():
    # 無管理區域: CC-CEDICT has no "unadministered"; "administer" finds the passage
    vocab = CorpusVocab({"管理", "区域"})
    groups = dict((w[0], g) for g, w in bridge_groups_sourced("How many unadministered areas are there?", vocab))
    assert "管理" in groups["unadministered"]
    assert crossling._derived_bases("under") == []  # not a negation prefix


def test_a_capitalised_word_prefers_the_proper_noun_it_is_a_sense_of():
    # CC-CEDICT: 我国 /our country/China/ outranks the proper noun 中国 /China/ for "china";
    # capitalised, the word names the country
    vocab = CorpusVocab({"中国", "我国", "中华", "开始"})
    groups = dict((w[0], g) for g, w in bridge_groups_sourced("When did China begin?", vocab))
    assert groups["china"][0] == "中国"


def test_a_model_number_is_one_word_as_the_search_tokens_keep_it():
    from rag.answering.gate import AnswerabilityGate
    from rag.tokens import tokenize

    assert tokenize("M114装甲车")[0] == "m114"
    groups = dict((w[0], g) for g, w in bridge_groups_sourced("Which army used the M114?", CorpusVocab({"m114"})))
    assert [t.lower() for t in groups["m114"]] == ["m114"]
    q = AnswerabilityGate().question("Which army used the M114 in 1990 with 3.5 tons?")
    forms = [n.forms for n in q.names]
    assert ("m114",) in forms and ("3.5",) in forms and ("114",) not in forms and ("1990",) not in forms


def test_british_words_that_swap_c_and_s_are_looked_up_in_american():
    from rag.crossling import _american_word

    assert _american_word("practise") == "practice" and _american_word("practising") == "practicing"
    assert _american_word("defence") == "defense" and _american_word("licences") == "licenses"
    assert _american_word("practice") == "practice" and _american_word("fence") == "fence"
    assert "实践" in bridge_terms("When did they practise it?", CorpusVocab({"实践", "开始"}))


def test_long_names_and_possessives_are_read_as_the_dictionary_writes_them():
    # CC-CEDICT's headwords of seven characters and more (中华人民共和国 /People's Republic of
    # China/) were never indexed, and a possessive in a sense ("people's") never matched a
    # question, whose words drop the 's: the phrase fell apart into 人民 and 中华民国
    vocab = CorpusVocab({"中华人民共和国", "人民", "中华民国", "全国运动会", "全国", "游戏", "跆拳道", "联合国教科文组织"})
    groups = bridge_groups("Where was the taekwondo competition of the 11th National Games of the "
                           "People's Republic of China held?", vocab)
    assert ["中华人民共和国"] in groups and ["全国运动会"] in groups
    assert not any("中华民国" in g or "游戏" in g for g in groups)
    assert ["联合国教科文组织"] in bridge_groups("What is UNESCO?", vocab)


def test_an_english_word_is_not_read_as_the_name_it_happens_to_spell():
    # the index gives a name its pinyin as a sense (武汉 "wuhan"); 马克 is spelled "make", so
    # "made" (read as "make") became 马克 and the fort question asked about a Mark
    groups = bridge_groups("When in the Qing dynasty was the fort made a county?")
    assert not any("马克" in g for g in groups)
    assert any("制作" in g or "制造" in g for g in groups)
    assert not any("嫦娥" in g for g in bridge_groups("How did the policy change?"))
    # a name stays a name: capitalised, or typed in lower case with no other sense
    assert any("马克" in g for g in bridge_groups("What did Mark say?"))
    assert any("武汉" in g for g in bridge_groups("what is wuhan building"))


def test_a_hyphenated_word_the_dictionary_knows_is_read_whole():
    # split, "non-profit" read as profit and "re-established" as "re" (胸花, 奶罩) and established
    assert bridge_groups("Is it a non-profit group?")[0] == ["非营利", "非盈利"]
    assert ["重建"] in bridge_groups("The university was re-established in 1980.")
    assert ["前妻"] in bridge_groups("Who is his ex-wife?")
    # a word known only by its parts is still read by them
    assert any("小麦" in g for g in bridge_groups("Which is the main wheat-growing region?"))
