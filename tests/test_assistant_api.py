"""The Python API over real Chroma with the fake embedder: ask/search/add_document."""
from __future__ import annotations

import pytest

from rag.assistant import Assistant, safe_filename
from rag.types import Answer, UserError


@pytest.fixture
def assistant(settings_for, fake_embedder):
    a = Assistant(settings_for(llm="extractive"), fake_embedder)
    a.index()
    return a


def test_search_and_ask(assistant):
    hits = assistant.search("上海8月发布了什么？", 3)
    assert len(hits) == 3 and "上海市加快推動" in hits[0].chunk.text
    ans = assistant.ask("上海8月发布了什么？")
    assert not ans.refused and ans.citations[0].n == 1 and ans.mode == "extractive"
    items = list(assistant.stream("上海8月发布了什么？"))
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1])


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_question_is_user_error(assistant, bad):
    with pytest.raises(UserError):
        assistant.ask(bad)


@pytest.mark.parametrize("k", [0, 51, "3", True])
def test_bad_k_is_user_error(assistant, k):
    with pytest.raises(UserError):
        assistant.search("上海", k)


def test_add_document_indexes_at_once(assistant, settings_for):
    before = assistant.status()["chunks"]
    report = assistant.add_document("note.md", "# 合肥\n\n合肥市在2025年設立了量子計算產業園，首期投資一百億元。\n".encode())
    assert report.added >= 1
    assert assistant.status()["chunks"] == before + report.added
    hits = assistant.search("合肥量子计算产业园投资多少？", 1)
    assert hits[0].chunk.source == "note.md"


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("evil.exe", b"hello", "only"),
        ("big.txt", b"a" * (2 * 1024 * 1024), "limit"),
        ("bin.txt", b"\x00\x01\x02" * 100, "binary"),
        ("empty.md", b"", "empty"),
    ],
)
def test_bad_uploads_leave_everything_as_it_was(assistant, name, data, match):
    assistant.settings = assistant.settings.model_copy(update={"upload_max_mb": 1})
    seeds_before = sorted(p.name for p in assistant.settings.seeds_dir.iterdir())
    chunks_before = assistant.status()["chunks"]
    with pytest.raises(UserError, match=match):
        assistant.add_document(name, data)
    assert sorted(p.name for p in assistant.settings.seeds_dir.iterdir()) == seeds_before
    assert assistant.status()["chunks"] == chunks_before


def test_traversal_names_stay_inside_seeds(assistant):
    assert safe_filename("../../evil.md") == "evil.md"
    assert safe_filename("..\\..\\x.txt") == "x.txt"
    assert safe_filename(".hidden.md") == "hidden.md"
    assistant.add_document("../../evil.md", "溫州市人工智能局正式揭牌。".encode())
    seeds = assistant.settings.seeds_dir
    assert (seeds / "evil.md").is_file()
    assert not (seeds.parent / "evil.md").exists() and not (seeds.parent.parent / "evil.md").exists()


def test_english_document_answers_english_question(assistant):
    assistant.add_document(
        "fair.md",
        b"# Blue Heron Robotics Fair\n\nThe Blue Heron Robotics Fair takes place in Tromso every March. "
        b"It shows underwater drones built by local students.\n",
    )
    ans = assistant.ask("When does the Blue Heron Robotics Fair take place?")
    assert not ans.refused and ans.citations[0].source == "fair.md"
    assert "March" in ans.text and "original Chinese" not in ans.text


def test_warm_pays_the_first_questions_loads_and_never_raises(assistant, monkeypatch):
    """`rag serve` warms the assistant in a background thread at start: afterwards the
    English bridge (CC-CEDICT index, the index's vocabulary) and the picker are loaded,
    so the first user question does not wait for them. A failing warm-up is silent."""
    from rag import crossling

    monkeypatch.setattr(crossling, "_INDEX", None)
    assistant.extractive._picker = None
    assistant.searcher._vocab = None
    assistant.warm()
    assert crossling._INDEX is not None
    assert assistant.searcher._vocab is not None  # built by the English question's search
    assert assistant.searcher._vocab._pinyin is not None  # names' readings
    assert assistant.extractive._picker is not None

    def broken(*a, **k):
        raise RuntimeError("index gone")

    monkeypatch.setattr(assistant, "search", broken)
    assistant.warm()  # logged, not raised


def test_after_the_warm_up_a_reloaded_index_gets_its_vocabulary_warmed(assistant):
    """An upload or a build by `rag index` swaps in a new index, whose vocabulary (and name
    readings) the next English question would build: once the server has warmed up, each
    reload warms it in a background thread."""
    assistant.index()
    assert assistant._vocab_warmer is None  # not before the server's warm-up
    assistant.warm()
    (assistant.settings.seeds_dir / "new.md").write_text("# 新文件\n\n鹊桥中继卫星发布了新的观测计划。", encoding="utf-8")
    assistant.index()
    assistant._vocab_warmer.join(timeout=60)
    vocab = assistant.searcher._vocab
    assert vocab is not None and vocab._pinyin is not None and "鹊桥" in vocab


def test_serve_starts_the_warm_up_before_serving(monkeypatch):
    import threading

    import uvicorn

    from rag import server

    calls = []

    class FakeAssistant:
        settings = None

        def warm(self):
            calls.append(threading.current_thread().name)

    monkeypatch.setattr(Assistant, "from_settings", classmethod(lambda cls, s: FakeAssistant()))
    monkeypatch.setattr(server, "create_app", lambda a, s: object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append("served"))
    server.run()
    for t in threading.enumerate():
        if t.name == "rag-warm":
            t.join(5)
    assert "rag-warm" in calls and "served" in calls
