"""One Gradio control for one registered setting, built from its OptionInfo (label, component,
ranges, hints); shared by the Settings tab and the quicksettings bar."""
import html
import re

import gradio as gr

from modules import shared

KINDS = {
    "slider": gr.Slider, "radio": gr.Radio, "dropdown": gr.Dropdown, "checkboxgroup": gr.CheckboxGroup,
    "color": gr.ColorPicker, "number": gr.Number, "textbox": gr.Textbox, "checkbox": gr.Checkbox,
}


# "(§16)", "(prompt-syntax.md §9.2)": references into our spec, not meant for users
_SPEC_REFERENCE = re.compile(r"\s*\((?:[\w.-]+\.md\s*)?§[\d.]+\)|\s*[\w-]+\.md\s*§[\d.]+")


def _plain(text: str) -> str:
    """Comments are HTML snippets (A1111 style); a control's info line takes plain text."""
    text = html.unescape(re.sub(r"<[^>]+>", "", text or ""))
    return _SPEC_REFERENCE.sub("", text).strip()


def component_args(info) -> dict:
    args = info.component_args
    if callable(args):
        args = args()
    return {key: value() if callable(value) else value for key, value in (args or {}).items()}


def hint(key: str, info) -> str:
    text = " ".join(filter(None, (_plain(info.comment_before), _plain(info.comment_after))))
    flag = shared.opts.frozen_by.get(key) if key in shared.opts.frozen_keys else None
    if flag:
        text = f"{text} (frozen by {flag})".strip()
    return text


def create(key: str, info, value, elem_id: str | None = None, **extra):
    """The control for `key` showing `value`; read-only when a flag froze the setting."""
    kind = info.component
    args = component_args(info)
    default = info.default
    if kind is None:
        if isinstance(default, bool):
            kind = "checkbox"
        elif isinstance(default, int):
            kind, args = "number", {"precision": 0, **args}
        elif isinstance(default, float):
            kind = "number"
        elif isinstance(default, list):
            kind, args = "multiselect", {"choices": list(value or []), **args}
        else:
            kind = "textbox"
    if kind == "multiselect":
        kind, args = "dropdown", {"multiselect": True, "allow_custom_value": True, **args}
    if kind == "dropdown":
        choices = list(args.get("choices") or [])
        current = value if isinstance(value, list) else [value]
        # a stored value the list lacks (a file removed since) stays visible instead of erroring
        missing = [v for v in current if v is not None and v not in choices]
        args["choices"] = choices + missing
    component_class = KINDS.get(kind, kind) if isinstance(kind, str) else kind
    if kind == "number" and value is None:
        value = 0
    frozen = key in shared.opts.frozen_keys
    kwargs = dict(label=info.label or key, value=value, elem_id=elem_id or f"setting_{key}",
                  interactive=not frozen, **args, **extra)
    text = hint(key, info)
    if text and component_class not in (gr.Button,):
        kwargs.setdefault("info", text)
    return component_class(**kwargs)
