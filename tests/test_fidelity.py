"""rag/answering/fidelity.py: the phrases of the evidence an English translation does not
verifiably carry are kept as written beside it; faithful renderings add nothing."""
from __future__ import annotations

from rag.answering.fidelity import _Trace, keep_written_terms, untraced_phrases
from rag.crossling import renderings

# the English shown before the translation (the model's answer): the answer as a whole
# must stay English, so a long written name needs some English around it
BEFORE = "The passage, translated: the club he joined that year is named in the passage [1]."


def test_renderings_are_whole_senses_of_the_words():
    r = renderings("a holding company in China")
    assert "控股公司" in r and "中国" in r
    assert "西北" not in r  # "China" is a word inside "northwest China", not a sense of it


def test_a_faithful_translation_carries_names_by_pinyin_and_dictionary():
    src = "该物种的模式产地在浙江舟山。"
    named = [p for p, name in untraced_phrases(src, _Trace("The species is found in Zhoushan, Zhejiang.")) if name]
    assert named == []
    # the same sentence with the town dropped: the place is kept as written, whole
    assert ("浙江舟山", True) in untraced_phrases(src, _Trace("The species is found in Zhejiang."))


def test_a_misrendered_name_is_kept_as_written_before_its_citation():
    out = keep_written_terms("In July 2007, Jeremy signed for Houston Texans [1].",
                             ["2007年7月，杰里米签约豪克斯湾联足球俱乐部。"], context=[BEFORE])
    # the phrase runs from the verb the English carries to the sentence end: the name keeps
    # its generic parts and the one-character 联 jieba tags as a verb
    assert out == "In July 2007, Jeremy signed for Houston Texans (豪克斯湾联足球俱乐部) [1]."


def test_a_free_rendering_of_a_title_keeps_the_title():
    out = keep_written_terms("The act is also known as the Fourth Part Reform Act [1].",
                             ["亦称为“《第四部改革法令》”。"], context=[BEFORE])
    assert "(《第四部改革法令》) [1]." in out


def test_the_answer_stays_english():
    # two English words cannot carry ten Chinese characters: nothing is added
    assert keep_written_terms("He signed [1].", ["杰里米签约豪克斯湾联足球俱乐部。"]) == "He signed [1]."


def test_names_only_each_placed_by_its_sentence():
    english = "This fish lives in the western Pacific [1]. It is silver below [1]."
    out = keep_written_terms(english, ["本鱼分布在西北太平洋区。", "体侧上半为褐紫色。"], context=[BEFORE])
    assert out == "This fish lives in the western Pacific (西北太平洋区) [1]. It is silver below [1]."
    # (褐紫色, a common noun the translation paraphrased, is left to it)
    later = keep_written_terms("It is silver below [1]. This fish lives in the western Pacific [1].",
                               ["体侧上半为褐紫色。", "本鱼分布在西北太平洋区。"], context=[BEFORE])
    assert later == "It is silver below [1]. This fish lives in the western Pacific (西北太平洋区) [1]."
    # a faithful rendering adds nothing
    assert keep_written_terms("It lives in the northwest Pacific [1].", ["分布在西北太平洋区。"],
                              context=[BEFORE]) == "It lives in the northwest Pacific [1]."


def test_a_name_jieba_cuts_apart_is_traced_by_its_whole_pinyin():
    # jieba cuts 史巴列/堤; "Shi Baliedi" is the pinyin of the whole name
    assert untraced_phrases("史巴列堤是于恩波利展开其教练生涯。",
                            _Trace("Shi Baliedi began his coaching career at En Boli (恩波利).")) == []


def test_a_common_word_jieba_tags_as_a_person_is_no_name():
    # jieba tags 智能化 nr here; it is untraced, but common in jieba's dictionary
    assert untraced_phrases("推动智能化应用。", _Trace("It promotes applications.")) == [("智能化", False)]


def test_a_name_left_in_chinese_is_followed_by_its_pinyin_once():
    from rag.answering.fidelity import romanise_left_names
    from rag.crossling import is_proper_noun

    # jieba tags the city 寿光 as a common person's name; CC-CEDICT lists it as a place
    assert is_proper_noun("寿光") and not is_proper_noun("顶峰")
    assert romanise_left_names("He was from the city of寿光 [1]. 寿光 is in Shandong.") == (
        "He was from the city of 寿光 (Shouguang) [1]. 寿光 is in Shandong.")
    # common words, written forms in parentheses and titles are left alone
    kept = "A subsidiary of JG顶峰控股 at En Boli (恩波利), known as 《上海》 [1]."
    assert romanise_left_names(kept) == kept


def test_a_name_jieba_cuts_into_characters_is_kept_whole():
    # jieba: 三/m 吴/nr 地区/n — no one-character piece is a content word, so the dropped
    # region was never checked against the translation; 是 (a copula) ends the name
    src = "而三吴地区是中央财库、各种支出的主要来源。"
    phrases = untraced_phrases(src, _Trace("The central treasury and all spending had one source."))
    assert ("三吴地区", True) in phrases
    out = keep_written_terms("The central treasury and all spending had one main source [1].", [src],
                             context=[BEFORE])
    assert out == "The central treasury and all spending had one main source (三吴地区) [1]."
    # carried by its pinyin, it is not added
    assert keep_written_terms("The Sanwu region was the main source of the central treasury [1].", [src],
                              context=[BEFORE]) == "The Sanwu region was the main source of the central treasury [1]."
