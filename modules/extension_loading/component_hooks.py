"""before_component / after_component (extensions.md §5.3, §6.1): every Gradio component created
while the UI is built passes through the scripts' and callbacks' hooks, as in A1111, which wraps
the component constructor the same way."""
import gradio as gr

from modules import script_callbacks

_original_init = None
runners: list = []  # ScriptRunners whose scripts see every component (set while building the UI)


def _hooked_init(self, *args, **kwargs):
    for runner in runners:
        runner.before_component(self, **kwargs)
    script_callbacks.before_component_callback(self, **kwargs)
    _original_init(self, *args, **kwargs)
    script_callbacks.after_component_callback(self, **kwargs)
    for runner in runners:
        runner.after_component(self, **kwargs)


def install() -> None:
    """Wrap Component.__init__ once (idempotent)."""
    global _original_init
    if _original_init is None:
        _original_init = gr.components.Component.__init__
        gr.components.Component.__init__ = _hooked_init
