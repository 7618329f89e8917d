"""One app on one port: the Gradio chat page at "/", an OpenAI-compatible API at
"/v1" and a search API at "/api".

* `create_app(assistant, settings) -> FastAPI` builds it around any object with
  the `Assistant` interface (tests pass a fake); `run(settings, host, port)` is
  what `rag serve` calls.
* `POST /v1/chat/completions` (stream or not): the last user message is the
  question, earlier user/assistant turns are the history. The answer text
  carries the [n] markers; the response has an extra `citations` list (and a
  `rag` object: refused, mode, lang, standalone question, notice). Extra request
  fields `k` and `mode` ("extractive" | "llm") pick the passages / answer mode.
  Streaming sends OpenAI `chat.completion.chunk` SSE events; the last chunk
  carries `citations` and `rag.answer`, the authoritative final text (when the
  final text merely extends what was streamed, the rest is sent as a delta).
* `GET /v1/models`, `POST /api/search` {"query", "k"}, `GET /api/status`.
* `settings.api_key` (RAG_API_KEY): /v1 and /api then need
  `Authorization: Bearer <key>` (401 otherwise); the page asks for the same key
  on Gradio's login form (any user name), so the key guards everything.
* Bad requests get 4xx JSON `{"error": {"message", "type", "code"}}`; an
  unexpected failure is a JSON 500 with no traceback.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
import sys
import threading
import time
import uuid
from typing import Any, Iterator

from rag.settings import Settings, offline_environment

offline_environment()

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from rag.assistant import MAX_K  # noqa: E402
from rag.priority import foreground  # noqa: E402
from rag.types import Answer, UserError  # noqa: E402

log = logging.getLogger(__name__)

MODEL_ID = "rag-assistant"
PROTECTED_PREFIXES = ("/v1", "/api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None, headers=None):
    return JSONResponse(
        {"error": {"message": message, "type": type_, "code": code}}, status_code=status, headers=headers
    )


# ------------------------------------------------------------ request parsing


MAX_JSON_DEPTH = 32  # the API's bodies are 4 levels deep; json itself would recurse into a RecursionError


async def _json_body(request: Request, max_bytes: int) -> dict:
    """The request's JSON object, checked: size, strict JSON (no NaN/Infinity),
    nesting, and text that can be encoded (no lone surrogates). ApiError(4xx) otherwise."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"Request body is over {max_bytes // 1024} KB.", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"Request body is over {max_bytes // 1024} KB.", code="body_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "Request body is empty; send a JSON object.")
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, f"Request body is nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid_json")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "Request body is not valid JSON.", code="invalid_json")
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    if not _all_text_encodable(body):
        raise ApiError(400, "Request body holds a lone surrogate escape (e.g. \\ud800), which is not text.",
                       code="invalid_json")
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _nesting(raw: bytes) -> int:
    """Deepest [ or { nesting, ignoring brackets inside strings (a linear scan,
    so that a hostile body cannot make the parser recurse)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _all_text_encodable(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _parse_k(value: Any, default: int) -> int:
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or int(value) != value
    ):
        raise ApiError(400, f"'k' must be an integer between 1 and {MAX_K}.", code="invalid_k")
    k = int(value)
    if not 1 <= k <= MAX_K:
        raise ApiError(400, f"'k' must be an integer between 1 and {MAX_K}.", code="invalid_k")
    return k


def _content_text(content: Any) -> str:
    """OpenAI message content: a string or a list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
            else:
                raise ApiError(400, "Only text message content is supported.", code="unsupported_content")
        return "".join(parts)
    raise ApiError(400, "Message 'content' must be a string or a list of text parts.")


def parse_chat_request(body: dict, default_k: int, settings: Settings | None = None) -> dict:
    """-> {question, history, k, mode, stream, model}; raises ApiError(400) on bad input."""
    settings = settings or Settings()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}.", code="invalid_messages")
    # Every earlier turn is re-read for each answer: bound them before any work.
    max_messages = 2 * settings.history_max_turns + 8  # turns, their answers, a few system messages
    if len(messages) > max_messages:
        raise ApiError(
            400,
            f"Too many messages ({len(messages)}); at most {max_messages} "
            f"({settings.history_max_turns} earlier turns) are accepted: start a new conversation.",
            code="history_too_long",
        )
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with 'role' and 'content'.", code="invalid_messages")
        role = msg["role"]
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ApiError(400, f"messages[{i}].role '{role}' is not supported.", code="invalid_messages")
        turns.append((role, _content_text(msg.get("content"))))
    total = sum(len(text) for _, text in turns[:-1])
    if total > settings.history_max_chars:
        raise ApiError(
            400,
            f"The earlier messages are {total} characters long; at most {settings.history_max_chars} are "
            "accepted: start a new conversation or send fewer turns.",
            code="history_too_long",
        )
    if turns[-1][0] != "user":
        raise ApiError(400, "The last message must be from the user.", code="invalid_messages")
    question = turns[-1][1].strip()
    if not question:
        raise ApiError(400, "The last user message is empty; ask a question.", code="empty_question")
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            history.append((pending, text))
            pending = None
    if len(history) > settings.history_max_turns:
        raise ApiError(
            400,
            f"The conversation has {len(history)} earlier turns; at most {settings.history_max_turns} are "
            "accepted: start a new conversation.",
            code="history_too_long",
        )
    mode = body.get("mode")
    if mode in ("", "auto"):
        mode = None
    if mode not in (None, "extractive", "llm"):
        raise ApiError(400, "'mode' must be 'extractive', 'llm' or 'auto'.", code="invalid_mode")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.")
    model = body.get("model") or MODEL_ID
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string.")
    return {
        "question": question,
        "history": history,
        "k": _parse_k(body.get("k"), default_k),
        "mode": mode,
        "stream": stream,
        "model": model,
    }


def _rag_extra(answer: Answer) -> dict:
    return {
        "refused": answer.refused,
        "mode": answer.mode,
        "lang": answer.lang,
        "standalone_question": answer.standalone_question or answer.question,
        "notice": answer.notice,
    }


def hit_dict(hit: Any) -> dict:
    c = hit.chunk
    return {
        "rank": hit.rank,
        "id": c.id,
        "text": c.text,
        "source": c.source,
        "heading": c.heading,
        "score": round(float(hit.score), 6),
        "start": c.start,
        "end": c.end,
        "span": [c.start, c.end],
    }


# ------------------------------------------------------------ the app


def create_app(assistant: Any, settings: Settings | None = None, *, with_ui: bool = True) -> FastAPI:
    settings = settings or Settings()
    # A request hands the GIL back and forth between the event loop and a
    # worker thread many times; with indexing running in another thread each
    # handoff can wait a whole switch interval (5 ms by default), which made
    # search p95 5x its idle value during an upload. 0.5 ms bounds that.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
    default_k = settings.top_k
    max_body = settings.request_max_kb * 1024
    api_key = settings.api_key or ""
    app = FastAPI(title="RAG assistant", docs_url=None, redoc_url=None, openapi_url=None)

    # ---- errors: always JSON, never a traceback
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.message, exc.type, exc.code)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError):
        return _error(400, str(exc), code="user_error")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"Internal error ({type(exc).__name__}); see the server log.", "server_error")

    # ---- bearer key for /v1 and /api (a plain ASGI middleware: streaming-safe)
    app.add_middleware(ForegroundMiddleware)
    if api_key:
        app.add_middleware(BearerKeyMiddleware, api_key=api_key)
    hosts = allowed_host_names(settings)
    if hosts is not None:  # added last, so it runs first
        app.add_middleware(AllowedHostMiddleware, names=hosts)

    # ---- OpenAI-compatible
    @app.get("/v1/models")
    def models():
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "local"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse_chat_request(await _json_body(request, max_body), default_k, settings)
        kwargs = {"k": req["k"], "history": req["history"], "mode": req["mode"]}
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = req["model"]
        if not req["stream"]:
            from starlette.concurrency import run_in_threadpool

            answer = await run_in_threadpool(assistant.ask, req["question"], **kwargs)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer.text},
                        "finish_reason": "stop",
                    }
                ],
                "citations": [c.to_dict() for c in answer.citations],
                "rag": _rag_extra(answer),
            }

        # Streaming: pull the first item before answering so that a UserError
        # (e.g. no index) is still a clean 400 rather than a broken stream.
        from starlette.concurrency import run_in_threadpool

        iterator = iter(assistant.stream(req["question"], **kwargs))
        sentinel = object()
        first = await run_in_threadpool(next, iterator, sentinel)

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            streamed = ""
            final: Answer | None = None
            try:
                items = iter(()) if first is sentinel else _chain(first, iterator)
                for item in items:
                    if isinstance(item, str):
                        if item:
                            streamed += item
                            yield chunk({"content": item})
                    else:
                        final = item
                if final is None:
                    final = Answer(text=streamed, refused=False, question=req["question"])
                if final.text != streamed and final.text.startswith(streamed):
                    yield chunk({"content": final.text[len(streamed):]})
                extra = _rag_extra(final)
                extra["answer"] = final.text
                extra["replaced"] = not final.text.startswith(streamed)
                yield chunk(
                    {}, "stop", citations=[c.to_dict() for c in final.citations], rag=extra
                )
            except UserError as exc:
                yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'invalid_request_error'}})}\n\n"
            except Exception as exc:
                log.exception("stream failed")
                msg = f"Internal error ({type(exc).__name__}); see the server log."
                yield f"data: {json.dumps({'error': {'message': msg, 'type': 'server_error'}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ---- search / status
    @app.post("/api/search")
    async def search(request: Request):
        body = await _json_body(request, max_body)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ApiError(400, "'query' must be a non-empty string.", code="empty_query")
        k = _parse_k(body.get("k"), default_k)
        from starlette.concurrency import run_in_threadpool

        hits = await run_in_threadpool(assistant.search, query.strip(), k)
        return {"query": query.strip(), "k": k, "hits": [hit_dict(h) for h in hits]}

    @app.get("/api/status")
    def status():
        return assistant.status()

    # ---- anything else under /v1 or /api: a JSON 404/405 here, not Gradio's page
    known = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/api/search": "POST", "/api/status": "GET"}

    def _not_here(request: Request):
        path = request.url.path.rstrip("/")
        if path in known:
            return _error(405, f"{request.method} is not allowed on {path}; use {known[path]}.",
                          headers={"Allow": known[path]})
        return _error(404, f"No such endpoint: {path}", code="not_found")

    for prefix in PROTECTED_PREFIXES:
        app.add_api_route(
            prefix + "/{rest:path}",
            _not_here,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            include_in_schema=False,
        )

    if with_ui:
        import gradio as gr

        from ui.app import CSS, build_ui, theme

        demo = build_ui(assistant, settings)
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=256)
        auth = None
        if api_key:
            def auth(username: str, password: str) -> bool:  # the page asks for the same key
                return secrets.compare_digest(str(password).encode(), api_key.encode())

        gr.mount_gradio_app(
            app,
            demo,
            path="/",
            server_name=settings.host,
            server_port=settings.port,
            footer_links=["api", "settings"],
            auth=auth,
            auth_message="Enter the server's RAG_API_KEY as the password (any user name)." if api_key else None,
            max_file_size=f"{int(settings.upload_max_mb * 1024 * 1024)}b",
            show_error=False,
            ssr_mode=False,
            mcp_server=False,
            theme=theme(),
            css=CSS,
        )
        # Gradio checks that a file an event names was uploaded only when it
        # launched the app itself; a mounted app gets the same check this way
        # (ui.app.uploaded_bytes checks again on its own).
        demo.has_launched = True
    return app


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_host_names(settings: Settings) -> set[str] | None:
    """Host header names this server answers to (None: any).

    A browser page on another site can reach a loopback server through DNS
    rebinding (its own name resolving to 127.0.0.1); it cannot choose the
    Host header, so only our own names are served: localhost, the bound
    address, RAG_ALLOWED_HOSTS (e.g. the name a reverse proxy forwards), and
    when bound to every interface, this machine's name and addresses."""
    extra = [h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()]
    if "*" in extra:
        return None
    names = set(LOCAL_NAMES) | set(extra)
    host = settings.host.strip().lower().strip("[]")
    if host in WILDCARD_BINDS:
        import socket

        try:
            hostname = socket.gethostname()
            names |= {hostname.lower(), socket.getfqdn().lower()}
            names |= {str(info[4][0]).lower() for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass
    else:
        names.add(host)
    return names


def host_name(header: str) -> str:
    """'Example.com:7860' -> 'example.com'; '[::1]:7860' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AllowedHostMiddleware:
    """400 JSON for a request whose Host header names a host we do not serve."""

    def __init__(self, app, names: set[str]):
        self.app = app
        self.names = names

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            name = host_name(headers.get(b"host", b"").decode("latin-1"))
            if name not in self.names:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = _error(
                    400,
                    f"Host {name!r} is not served here; add it to RAG_ALLOWED_HOSTS "
                    "(e.g. the name a reverse proxy forwards).",
                    code="invalid_host",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ForegroundMiddleware:
    """The whole of an API request counts as foreground work (rag/priority.py):
    indexing in the background pauses while it is parsed and answered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path", "").startswith(PROTECTED_PREFIXES):
            with foreground():
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class BearerKeyMiddleware:
    """401 JSON for /v1 and /api requests without `Authorization: Bearer <key>`."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope.get("path", "")
            if any(path == p or path.startswith(p + "/") for p in PROTECTED_PREFIXES):
                headers = dict(scope.get("headers") or [])
                scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), self.key):
                    response = _error(
                        401,
                        "Missing or wrong API key: send 'Authorization: Bearer <RAG_API_KEY>'.",
                        code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _chain(first: Any, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def run(settings: Settings | None = None, host: str | None = None, port: int | None = None) -> None:
    """`rag serve`: build the assistant once and serve page + API with uvicorn."""
    offline_environment()
    import uvicorn

    from rag import Assistant

    settings = settings or Settings()
    host = host or settings.host
    port = port or settings.port
    settings = settings.model_copy(update={"host": host, "port": port})  # the Host check knows the bind
    assistant = Assistant.from_settings(settings)
    # the first question of a fresh server no longer pays the one-time loads
    threading.Thread(target=assistant.warm, name="rag-warm", daemon=True).start()
    app = create_app(assistant, settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"Serving on http://{shown}:{port}/  (page)  ·  /v1 (OpenAI API)  ·  /api/search", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
