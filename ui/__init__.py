"""The Gradio chat page (ui.app.build_ui), mounted by rag.server at "/"."""
