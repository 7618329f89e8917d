"""Property test: no JSON body (or byte string) sent to /v1/chat/completions
or /api/search gets a 5xx or a server_error event from the real Assistant."""
from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.assistant import Assistant
from rag.settings import Settings
from tests.conftest import SEED, FakeEmbedder

# text including lone surrogates, control characters and CJK
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=60),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()), min_size=1, max_size=2),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 60),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -float("inf"), 5.0, 1e300]),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
ROLE = st.one_of(st.sampled_from(["user", "assistant", "system", "developer", "tool", "wizard"]), JSON)
PART = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.one_of(TEXT, JSON)}), JSON
)
CONTENT = st.one_of(TEXT, st.sampled_from(["上海8月发布了什么？", "What did Shanghai announce?"]), st.lists(PART, max_size=3), JSON)
MESSAGE = st.one_of(st.fixed_dictionaries({"role": ROLE, "content": CONTENT}), JSON)
QUESTION = st.fixed_dictionaries({"role": st.just("user"), "content": st.one_of(TEXT, st.just("上海8月发布了什么？"))})
VALID_MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": TEXT}), max_size=4
).flatmap(lambda earlier: QUESTION.map(lambda q: [*earlier, q]))
CHAT = st.fixed_dictionaries(
    {},
    optional={
        # mostly well-formed conversations, so that the later fields are reached too
        "messages": st.one_of(VALID_MESSAGES, VALID_MESSAGES, st.lists(MESSAGE, min_size=1, max_size=6), JSON),
        "k": st.one_of(st.integers(-2, 60), SCALARS, JSON),
        "mode": st.one_of(st.sampled_from(["extractive", "llm", "auto", ""]), JSON),
        "stream": st.one_of(st.booleans(), JSON),
        "model": JSON,
    },
)
SEARCH = st.fixed_dictionaries(
    {}, optional={"query": st.one_of(TEXT, st.just("上海 人工智能"), JSON), "k": st.one_of(st.integers(-2, 60), SCALARS, JSON)}
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    base = tmp_path_factory.mktemp("fuzz")
    (base / "seeds").mkdir()
    shutil.copy(SEED, base / "seeds" / SEED.name)
    s = Settings(seeds_dir=base / "seeds", index_dir=base / "index", llm="extractive",
                 model_dir=base / "no-models", allowed_hosts="testserver")
    assistant = Assistant(s, FakeEmbedder())
    assistant.index()
    with TestClient(create_app(assistant, s, with_ui=False), raise_server_exceptions=False) as c:
        yield c


def _post(client, path: str, raw: bytes) -> None:
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (raw[:300], r.text[:500])
    assert "server_error" not in r.text and "Traceback" not in r.text, (raw[:300], r.text[:500])


@FUZZ
@given(body=CHAT)
def test_chat_bodies_never_5xx(client, body):
    _post(client, "/v1/chat/completions", json.dumps(body, allow_nan=True).encode())


@FUZZ
@given(body=SEARCH)
def test_search_bodies_never_5xx(client, body):
    _post(client, "/api/search", json.dumps(body, allow_nan=True).encode())


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v, allow_nan=True).encode())))
def test_any_bytes_never_5xx(client, raw):
    _post(client, "/v1/chat/completions", raw)
    _post(client, "/api/search", raw)
