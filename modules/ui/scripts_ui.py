"""The scripts area of a generation tab: always-on script sections, then the Script dropdown with
the selected script's controls (extensions.md §5.5). Returns the flat list of inputs whose values
become p.script_args."""
import gradio as gr

from modules import scripts


def create(tabname: str) -> list:
    runner = scripts.runner_for(tabname == "img2img")
    with gr.Column(elem_id=f"{tabname}_script_container"):
        runner.setup_ui()
    return runner.inputs


def create_section(tabname: str, section: str) -> None:
    """The always-on scripts that belong to a section of the tab (e.g. "inpaint"), built here; their
    inputs join the list `create` returns."""
    scripts.runner_for(tabname == "img2img").setup_ui_for_section(section)


def components_seen_by(tabname: str) -> None:
    """From now on, components created call the on_before/after_component hooks of this tab's
    scripts (A1111's scripts_current while a tab is built)."""
    from modules.extension_loading import component_hooks
    component_hooks.runners[:] = [scripts.runner_for(tabname == "img2img")]


def attach(p, tabname: str, script_values) -> None:
    """Give the job its runner and the values of the scripts' controls."""
    p.scripts = scripts.runner_for(tabname == "img2img")
    p.script_args = list(script_values)


def _convert(component, value):
    if isinstance(component, gr.Checkbox):
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if isinstance(component, (gr.Slider, gr.Number)):
        number = float(value)
        return int(number) if number.is_integer() and isinstance(getattr(component, "step", 1), int) else number
    return value if isinstance(value, (list, str)) else str(value)


def script_values_from_infotext(runner, text: str) -> list:
    """Updates for the scripts' infotext_fields components (A1111's paste: a key, or a function of
    the parsed parameters); a key the infotext lacks leaves its control as it is."""
    from modules import errors, shared
    from modules.ui.png_info import pasted_params
    if not (text or "").strip():
        try:
            with open(shared.paths.params_file, encoding="utf8") as file:
                text = file.read()
        except OSError:
            return [gr.skip()] * len(_paste_components(runner))
    params = pasted_params(text)
    values = {}
    for component, source in runner.infotext_fields:
        try:
            value = source(params) if callable(source) else params.get(source)
            if value is not None:
                values[id(component)] = _convert(component, value)
        except (TypeError, ValueError):
            errors.report(f"Cannot paste {source!r} into {getattr(component, 'label', component)}", exc_info=True)
    return [values.get(id(c), gr.skip()) for c in _paste_components(runner)]


def _paste_components(runner) -> list:
    seen, components = set(), []
    for component, _ in runner.infotext_fields:
        if id(component) not in seen:
            seen.add(id(component))
            components.append(component)
    return components


def paste_outputs(tabname: str) -> list:
    """The scripts' controls that pasted infotext fills (add them to a paste event's outputs)."""
    return _paste_components(scripts.runner_for(tabname == "img2img"))


def paste_values(tabname: str, text: str) -> list:
    """Values for paste_outputs(tabname), in that order."""
    return script_values_from_infotext(scripts.runner_for(tabname == "img2img"), text)


def connect_paste(button, text_source, tabname: str) -> None:
    """Pasting infotext (Read parameters, PNG Info's Send to) also fills the scripts' controls."""
    runner = scripts.runner_for(tabname == "img2img")
    components = _paste_components(runner)
    if components:
        button.click(lambda text: script_values_from_infotext(runner, text), inputs=[text_source],
                     outputs=components, queue=False, api_visibility="private")
