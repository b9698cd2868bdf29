"""ui-config.json: the initial state of the UI's controls (ui.md §9.4).

Keys are A1111's `<tab id>/<label>/<field>` (e.g. `txt2img/Sampling steps/value`). Each UI build
applies the stored values to the controls, adds the missing keys with the code's defaults and
rewrites the file when it added any. The Settings tab's Defaults page writes the controls' current
values into the file; they take effect at the next build (Reload UI)."""
import json
import os
import tempfile

import gradio as gr

from modules import shared

SKIPPED_TABS = {"settings", "extensions"}
# Control type -> the fields kept for it.
FIELDS = {gr.Slider: ("value", "minimum", "maximum", "step")}
VALUE_TYPES = (gr.Radio, gr.Checkbox, gr.Textbox, gr.Number, gr.Dropdown, gr.Slider)

_defaults_page: dict = {}  # the Defaults page's controls, wired once every tab exists


def config_file() -> str:
    return shared.cmd_opts.ui_config_file or os.path.join(shared.paths.data, "ui-config.json")


def read(filename: str) -> tuple[dict, bool]:
    """(values, readable): a file that is not a JSON object is reported and left untouched."""
    if not os.path.exists(filename):
        return {}, True
    try:
        with open(filename, encoding="utf8") as file:
            data = json.load(file)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data, True
    except (OSError, ValueError) as e:
        print(f"UI config {filename} could not be read ({e}); using the built-in control defaults")
        return {}, False


def write(filename: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(filename))
    fd, tmp = tempfile.mkstemp(prefix="ui-config.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf8") as file:
            json.dump(data, file, indent=4, ensure_ascii=False)
        os.replace(tmp, filename)
    except BaseException:
        os.unlink(tmp)
        raise


def _choice_texts(component) -> list:
    return [choice[0] if isinstance(choice, (tuple, list)) else choice for choice in component.choices or []]


def tracked_components(demo: gr.Blocks) -> list[tuple[str, object]]:
    """(key prefix "<tab>/<label>", control) for every labelled control outside Settings/Extensions;
    a label used twice in a tab keeps its first control."""
    found, seen = [], set()

    def walk(block, tab):
        if isinstance(block, gr.Tab):
            tab = block.id or block.label
        if tab and tab not in SKIPPED_TABS and isinstance(block, (*VALUE_TYPES, gr.Button)):
            label = block.value if isinstance(block, gr.Button) else block.label
            prefix = f"{tab}/{label}"
            if label and prefix not in seen:
                seen.add(prefix)
                found.append((prefix, block))
        for child in getattr(block, "children", []) or []:
            walk(child, tab)
    walk(demo, None)
    return found


def fields_of(component) -> dict:
    if isinstance(component, gr.Button):
        return {"visible": component.visible} if component.visible is True else {}
    values = {name: getattr(component, name) for name in FIELDS.get(type(component), ("value",))}
    if isinstance(component, gr.Textbox) and values["value"] is None:
        values["value"] = ""  # an empty box: A1111 stores the empty text
    if isinstance(component, gr.Radio) and component.type == "index" and isinstance(values["value"], int):
        values["value"] = _choice_texts(component)[values["value"]]  # choice text, as A1111 stores
    if component.visible is True:
        values["visible"] = True
    return values


def _accepts(component, name: str, stored, current) -> bool:
    if type(stored) is not type(current):  # exact types only: 20.0 is not an int's value
        return False
    if name == "value" and isinstance(component, (gr.Radio, gr.Dropdown)) and not getattr(component, "multiselect", False):
        return stored in _choice_texts(component)
    return True


def apply_to_ui(demo: gr.Blocks, filename: str | None = None) -> None:
    """Call at the end of the UI build, inside `with demo:`."""
    filename = filename or config_file()
    stored, readable = read(filename)
    added = False
    tracked = tracked_components(demo)
    for prefix, component in tracked:
        for name, current in fields_of(component).items():
            key = f"{prefix}/{name}"
            if key not in stored:
                stored[key] = current
                added = True
                continue
            value = stored[key]
            if name == "visible":
                if value is False:  # hide, never unhide
                    component.visible = False
            elif _accepts(component, name, value, current):
                setattr(component, name, value)
    if added and readable:
        write(filename, stored)
    _wire_defaults_page(tracked, filename)


def changes(tracked, values, filename) -> list[list]:
    stored, _ = read(filename)
    rows = []
    for (prefix, component), value in zip(tracked, values):
        key = f"{prefix}/value"
        if isinstance(component, gr.Radio) and component.type == "index" and isinstance(value, int):
            value = _choice_texts(component)[value]
        if key in stored and stored[key] != value:
            rows.append([key, stored[key], value])
    return rows


def create_defaults_page() -> dict:
    gr.Markdown("This page saves the current values of the controls on the other tabs as their "
                "defaults in ui-config.json. The new defaults are used after Reload UI.")
    with gr.Row():
        view = gr.Button("View changes", elem_id="ui_defaults_view")
        apply_button = gr.Button("Apply", elem_id="ui_defaults_apply", variant="primary")
    table = gr.Dataframe(headers=["Path", "Old value", "New value"], interactive=False,
                         elem_id="ui_defaults_changes", visible=True)
    status = gr.HTML(elem_id="ui_defaults_status")
    _defaults_page.update(view=view, apply=apply_button, table=table, status=status)
    return dict(_defaults_page)


def view_changes(value_tracked, values, filename) -> tuple[list[list], str]:
    """Defaults page, View changes: the rows (path, stored, current) that differ, and a summary."""
    rows = changes(value_tracked, values, filename)
    return (rows or [["(no changes)", "", ""]]), f"{len(rows)} changes" if rows else "No changes."


def save_changes(value_tracked, values, filename) -> str:
    """Defaults page, Apply: write the changed values into ui-config.json (an unreadable file is
    left as it is: it may be the user's hand-edited one)."""
    rows = changes(value_tracked, values, filename)
    stored, readable = read(filename)
    if not readable:
        return f"<span class='error'>{filename} could not be read; not overwritten</span>"
    for key, _, value in rows:
        stored[key] = value
    write(filename, stored)
    return f"Wrote {len(rows)} changed defaults to {filename}; Reload UI to use them."


def value_tracked_components(tracked) -> list[tuple[str, object]]:
    return [(prefix, component) for prefix, component in tracked if not isinstance(component, gr.Button)]


def _wire_defaults_page(tracked, filename) -> None:
    if not _defaults_page:
        return
    value_tracked = value_tracked_components(tracked)
    inputs = [component for _, component in value_tracked]
    _defaults_page["view"].click(lambda *values: view_changes(value_tracked, values, filename), inputs=inputs,
                                 outputs=[_defaults_page["table"], _defaults_page["status"]],
                                 api_visibility="private")
    _defaults_page["apply"].click(lambda *values: save_changes(value_tracked, values, filename), inputs=inputs,
                                  outputs=[_defaults_page["status"]], api_visibility="private")
