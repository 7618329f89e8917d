"""The chat page: a Gradio Blocks app over an `Assistant`.

What a person sees:

* a chat that streams the answer; the `[n]` markers in a finished answer are
  links, and clicking one opens that passage below the chat: its source file
  and the cited span highlighted inside the surrounding original text;
* a sources panel (table) listing the passages the answer cites, with scores;
  clicking a row opens the passage the same way;
* example questions, a clear-chat button, a settings area (answer mode, number
  of passages), an index status line, and an upload box for .txt/.md files.

`build_ui(assistant, settings)` returns the Blocks; `rag.server` mounts it at
"/" inside the FastAPI app (theme/css are passed there, Gradio 6 style).
The pure helpers (linkify, passage context, history pairs) are separate so the
fast tests can check them without a browser.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

from rag.settings import Settings, offline_environment

offline_environment()  # GRADIO_ANALYTICS_ENABLED=False before gradio is imported

import gradio as gr  # noqa: E402

from rag.assistant import safe_filename  # noqa: E402
from rag.types import Answer, Citation, UserError  # noqa: E402

log = logging.getLogger(__name__)

EXAMPLES = [
    "What did Shanghai announce in August?",
    "上海8月发布了什么？",
    "全國首個市級人工智能管理機構在哪裡？",
    "How large was the global industrial AI market in 2024?",
]

# (label, value); value "auto" means mode=None (the assistant decides)
MODE_CHOICES = [
    ("Auto (LLM when prepared, else extractive)", "auto"),
    ("Extractive (quote the passages)", "extractive"),
    ("LLM (generated, cited)", "llm"),
]
MAX_K = 20
CONTEXT_CHARS = 350  # original text shown on each side of a cited span
NOTICE_PREFIX = "\n\n> Note: "
HIGHLIGHT = "#facc15"  # the cited span in the passage viewer

# System fonts only: nothing is fetched from the internet. The Default theme's
# own fonts (Source Sans Pro / IBM Plex Mono) are served by Gradio itself; the
# CJK fallbacks are whatever the machine has.
FONT_STACK = (
    gr.themes.LocalFont("Source Sans Pro"),
    "Noto Sans CJK SC",
    "WenQuanYi Zen Hei",
    "PingFang SC",
    "Microsoft YaHei",
    "system-ui",
    "sans-serif",
)
FONT_MONO = (gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace")

CSS = """
#cite-hint p { font-size: 0.85em; opacity: 0.75; margin: 0; }
#index-status p { margin: 0; }
#chatbot a[href^="#cite-"] {
  color: var(--color-accent); text-decoration: underline; font-weight: 700; cursor: pointer;
}
"""

# A click on "[n]" inside an answer is an <a href="#cite-TURN-N">. This listener
# (attached once, by the small hint component below the chat) turns it into a
# Gradio event on that component with {turn, n}; Python then opens the passage.
CITE_JS = """
if (!window.__ragCiteListener) {
  window.__ragCiteListener = true;
  document.addEventListener('click', (ev) => {
    const a = ev.target && ev.target.closest ? ev.target.closest('a[href*="#cite-"]') : null;
    if (!a) return;
    const m = (a.getAttribute('href') || '').match(/#cite-(\\d+)-(\\d+)/);
    if (!m) return;
    ev.preventDefault();
    ev.stopPropagation();
    trigger('click', {turn: parseInt(m[1], 10), n: parseInt(m[2], 10)});
  }, true);
}
"""

_MARKER = re.compile(r"\[(\d{1,3})\]")
_LINKED = re.compile(r"\[\\\[(\d{1,3})\\\]\]\(#cite-\d+-\d+\)")


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=FONT_STACK, font_mono=FONT_MONO)


# ---------------------------------------------------------------- pure helpers


def linkify(text: str, turn: int, numbers: set[int]) -> str:
    """`[n]` -> a markdown link to citation n of this turn (only for n that exist)."""

    def repl(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n not in numbers:
            return m.group(0)
        return f"[\\[{n}\\]](#cite-{turn}-{n})"

    return _MARKER.sub(repl, text)


def unlinkify(text: str) -> str:
    """Inverse of linkify (and drops the notice line): what the assistant really said."""
    text = text.split(NOTICE_PREFIX, 1)[0]
    return _LINKED.sub(lambda m: f"[{m.group(1)}]", text)


def render_answer(answer: Answer, turn: int) -> str:
    text = linkify(answer.text, turn, {c.n for c in answer.citations})
    if answer.notice:
        text += NOTICE_PREFIX + answer.notice
    return text


def message_text(content: Any) -> str:
    """Chatbot message content (str, or Gradio 6's list of parts) -> plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return str(content)


def history_pairs(messages: list[dict] | None) -> list[tuple[str, str]]:
    """Chatbot messages -> [(user, assistant)] for the assistant's multi-turn rewrite."""
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for msg in messages or []:
        role = msg.get("role") if isinstance(msg, dict) else getattr(msg, "role", None)
        content = msg.get("content") if isinstance(msg, dict) else getattr(msg, "content", None)
        text = message_text(content)
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            pairs.append((pending, unlinkify(text)))
            pending = None
    return pairs


def passage_context(original: str, start: int, end: int, width: int = CONTEXT_CHARS):
    """Split the original text around [start:end] -> (before, cited, after), trimmed to `width`."""
    start = max(0, min(start, len(original)))
    end = max(start, min(end, len(original)))
    lo = max(0, start - width)
    hi = min(len(original), end + width)
    before = original[lo:start]
    after = original[end:hi]
    if lo > 0:
        nl = before.find("\n")
        before = "…" + (before[nl + 1 :] if 0 <= nl < len(before) - 1 else before)
    if hi < len(original):
        nl = after.rfind("\n")
        after = (after[:nl] if nl > 0 else after) + "…"
    return before, original[start:end], after


def source_rows(citations: list[dict]) -> list[list[Any]]:
    rows = []
    for c in citations:
        text = " ".join(str(c.get("text", "")).split())
        if len(text) > 180:
            text = text[:180] + "…"
        rows.append([f"[{c['n']}]", c.get("source", ""), round(float(c.get("score", 0.0)), 4), text])
    return rows


def status_line(status: dict) -> str:
    docs = status.get("documents", "?")
    chunks = status.get("chunks", "?")
    return (
        f"**Index:** {docs} document{'s' if docs != 1 else ''} · {chunks} chunks · "
        f"embeddings `{status.get('embed_model', '?')}` · LLM: `{status.get('llm', '?')}`"
    )


def _mode_arg(mode: str | None) -> str | None:
    return None if mode in (None, "", "auto") else mode


def _k_arg(k: Any, default: int) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        return default
    return max(1, min(MAX_K, k))


def uploaded_bytes(path: str | Path, blocks: gr.Blocks) -> bytes:
    """The bytes of a file this page's upload route received, else UserError.

    The upload event's payload is a path chosen by the client. Gradio checks
    that it was uploaded only for apps it launched itself, not for apps
    mounted into FastAPI, so without this a request naming `/any/file.txt`
    would have any readable server file copied into the documents and
    searchable. Accepted: a path Gradio's upload route handed out
    (`upload_file_set`), in its upload folder, not a link, whose content
    still hashes to the folder Gradio named after it."""
    from gradio import processing_utils
    from gradio.utils import get_upload_folder

    from rag.ingest import read_regular_file

    p = Path(path)
    folder = Path(get_upload_folder()).resolve()
    received = {str(Path(f).resolve()) for f in getattr(blocks, "upload_file_set", ())}
    if p.is_symlink() or str(p.resolve()) not in received or p.resolve().parent.parent != folder:
        raise UserError("this file was not uploaded through this page")
    if not p.exists():
        raise UserError("the upload has not finished; please add the file again")
    data = read_regular_file(p)
    if processing_utils.hash_bytes(data) != p.parent.name:
        raise UserError("the uploaded file changed after it was received; please upload it again")
    return data


# ---------------------------------------------------------------- the page


SOURCE_HEADERS = ["cite", "source", "score", "passage"]
EMPTY_VIEWER_TITLE = "Click a citation **[n]** in an answer, or a row in *Sources*, to open the passage here."


def build_ui(assistant: Any, settings: Settings) -> gr.Blocks:
    default_k = _k_arg(settings.top_k, 5)

    def current_status() -> str:
        try:
            return status_line(assistant.status())
        except Exception as exc:  # never a traceback on the page
            log.exception("status failed")
            return f"**Index:** unavailable ({type(exc).__name__})"

    def open_citation(cite: dict | None):
        if not cite:
            return gr.update(value=EMPTY_VIEWER_TITLE), gr.update(value=None, visible=False)
        title = (
            f"**[{cite['n']}] `{cite['source']}`** · characters {cite['start']}–{cite['end']}"
            f" · score {float(cite.get('score', 0.0)):.4f}"
        )
        try:
            original = assistant.original_text(cite["source"])
            before, cited, after = passage_context(original, int(cite["start"]), int(cite["end"]))
            if not cited.strip():
                raise ValueError("empty span")
        except Exception as exc:  # file gone or span out of range: show the passage itself
            log.warning("original text unavailable for %s: %s", cite.get("source"), exc)
            before, cited, after = "", str(cite.get("text", "")), ""
            title += " · (original file unavailable; showing the indexed passage)"
        label = f"[{cite['n']}]"
        value = [(before, None), (cited, label), (after, None)]
        return gr.update(value=title), gr.update(value=value, color_map={label: HIGHLIGHT}, visible=True)

    def chat(message: str, history: list[dict] | None, mode: str, k: float, turns: list | None):
        """Ask a question; streams the chat. API: /chat (message, history, mode, k)."""
        history = list(history or [])
        turns = list(turns or [])
        question = (message or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield history, message, gr.skip(), turns
            return
        pairs = history_pairs(history)
        history = history + [
            {"role": "user", "content": question},
            {"role": "assistant", "content": "…"},
        ]
        yield history, "", [], turns  # the previous answer's sources go away
        shown = ""
        final: Answer | None = None
        try:
            for item in assistant.stream(
                question, k=_k_arg(k, default_k), history=pairs, mode=_mode_arg(mode)
            ):
                if isinstance(item, str):
                    shown += item
                    history[-1] = {"role": "assistant", "content": shown}
                    yield history, "", gr.skip(), turns
                else:
                    final = item
        except UserError as exc:
            history[-1] = {"role": "assistant", "content": f"**Error:** {exc}"}
            yield history, "", gr.skip(), turns
            return
        except Exception as exc:
            log.exception("chat failed")
            history[-1] = {
                "role": "assistant",
                "content": f"**Error:** something went wrong while answering ({type(exc).__name__}). "
                "The index is unchanged; please try again.",
            }
            yield history, "", gr.skip(), turns
            return
        if final is None:  # defensive: the stream contract promises one final Answer
            final = Answer(text=shown, refused=False, question=question)
        turn = len(turns)
        cites = [c.to_dict() for c in final.citations]
        turns.append(cites)
        history[-1] = {"role": "assistant", "content": render_answer(final, turn)}
        yield history, "", source_rows(cites), turns

    def on_cite_click(turns: list | None, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        try:
            turn, n = int(data.get("turn")), int(data.get("n"))
            cites = (turns or [])[turn]
        except (TypeError, ValueError, IndexError):
            return gr.skip(), gr.skip()
        for c in cites:
            if int(c["n"]) == n:
                return open_citation(c)
        return gr.skip(), gr.skip()

    def on_source_select(turns: list | None, evt: gr.SelectData):
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
            return open_citation((turns or [])[-1][row])
        except (TypeError, ValueError, IndexError):
            return gr.skip(), gr.skip()

    def clear_chat():
        title, viewer = open_citation(None)
        return [], "", [], [], title, viewer

    def upload(files: list[str] | str | None, progress=gr.Progress()):
        if not files:
            return current_status(), "No file chosen.", None
        if isinstance(files, (str, Path)):
            files = [files]
        lines = []
        for path in progress.tqdm(files, desc="Indexing"):
            name = Path(path).name  # Gradio keeps the (already stripped) original name
            try:
                data = uploaded_bytes(path, demo)
                report = assistant.add_document(name, data)
                summary = report.summary() if hasattr(report, "summary") else str(report)
                saved = getattr(report, "saved_as", "") or name
                if saved != safe_filename(name):
                    summary = f"saved as `{saved}` because a different `{safe_filename(name)}` is already there; " + summary
                    name = saved
                lines.append(f"**Added** `{name}`: {summary}")
            except UserError as exc:
                lines.append(f"**Not added** `{name}`: {exc}")
                gr.Warning(f"{name} was not added: {exc}")
            except Exception as exc:
                log.exception("upload of %s failed", name)
                lines.append(
                    f"**Not added** `{name}`: could not be indexed ({type(exc).__name__}); the index is unchanged."
                )
        return current_status(), "\n\n".join(lines), None

    with gr.Blocks(title="RAG assistant", analytics_enabled=False) as demo:
        turns_state = gr.State([])
        gr.Markdown("## Ask the documents\nAnswers cite their passages as **[n]**; click one to see it in the original text.")
        status_md = gr.Markdown(elem_id="index-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat",
                    elem_id="chatbot",
                    height=460,
                    buttons=["copy"],
                    feedback_options=None,
                    placeholder="Ask in English or Chinese, e.g. *What did Shanghai announce in August?*",
                )
                with gr.Row():
                    question = gr.Textbox(
                        show_label=False,
                        placeholder="Ask a question… (Enter to send)",
                        elem_id="question",
                        scale=5,
                        autofocus=True,
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                gr.Examples(examples=[[e] for e in EXAMPLES], inputs=[question], label="Examples")
                with gr.Row():
                    clear = gr.Button("Clear chat", elem_id="clear", size="sm")
            with gr.Column(scale=2):
                sources = gr.Dataframe(
                    headers=SOURCE_HEADERS,
                    value=[],
                    label="Sources (passages the answer cites; click a row to open it)",
                    elem_id="sources",
                    interactive=False,
                    wrap=True,
                    type="array",
                    column_widths=["12%", "24%", "14%", "50%"],
                )
                cite_hint = gr.HTML(
                    "<p>Tip: click <b>[n]</b> in an answer, or a row in <i>Sources</i>, to open its passage.</p>",
                    elem_id="cite-hint",
                    js_on_load=CITE_JS,
                    container=False,
                )
                viewer_title = gr.Markdown(EMPTY_VIEWER_TITLE, elem_id="passage-title")
                viewer = gr.HighlightedText(
                    label="Passage in its original text",
                    elem_id="passage",
                    show_legend=False,
                    show_inline_category=True,
                    combine_adjacent=False,
                    visible=False,
                    interactive=False,
                )
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    mode = gr.Radio(MODE_CHOICES, value="auto", label="Answer mode", elem_id="mode")
                    k = gr.Slider(1, MAX_K, value=default_k, step=1, label="Passages to retrieve (k)", elem_id="k")
                with gr.Accordion("Add documents", open=True, elem_id="add-docs"):
                    files = gr.File(
                        label=f".txt or .md, up to {settings.upload_max_mb:g} MB each",
                        file_count="multiple",
                        file_types=[".txt", ".md"],
                        type="filepath",
                        elem_id="upload",
                    )
                    upload_btn = gr.Button("Add to index", elem_id="upload-btn")
                    upload_msg = gr.Markdown(elem_id="upload-msg")

        chat_inputs = [question, chatbot, mode, k, turns_state]
        chat_outputs = [chatbot, question, sources, turns_state]
        question.submit(chat, chat_inputs, chat_outputs, api_name="chat")
        send.click(chat, chat_inputs, chat_outputs, api_visibility="private")
        clear.click(
            clear_chat,
            None,
            [chatbot, question, sources, turns_state, viewer_title, viewer],
            api_visibility="private",
        )
        chatbot.clear(  # the chat's own trash icon clears sources and passage too
            clear_chat,
            None,
            [chatbot, question, sources, turns_state, viewer_title, viewer],
            api_visibility="private",
        )
        cite_hint.click(on_cite_click, [turns_state], [viewer_title, viewer], api_visibility="private")
        sources.select(on_source_select, [turns_state], [viewer_title, viewer], api_visibility="private")
        upload_btn.click(
            upload, [files], [status_md, upload_msg, files], api_name="upload", concurrency_limit=1
        )
        demo.load(current_status, None, status_md, api_name="status")
    return demo
