"""Runs the postprocessing steps over images (extras.md §4.3) and builds their infotext (§4.5)."""
import html

from modules import infotext_utils, shared
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing, registered_steps, \
    script_file_steps


def builtin_step_classes() -> list[type]:
    from modules.postprocessing.face_steps import ScriptPostprocessingCodeFormer, ScriptPostprocessingGfpGan
    from modules.postprocessing.training_steps import TRAINING_STEPS
    from modules.postprocessing.upscale_step import ScriptPostprocessingUpscale
    return [ScriptPostprocessingUpscale, ScriptPostprocessingGfpGan, ScriptPostprocessingCodeFormer, *TRAINING_STEPS]


def ordered_steps(classes: list[type] | None = None, *, for_extras: bool = True) -> list[ScriptPostprocessing]:
    """Named in postprocessing_operation_order first (in that order), then by rank, then by name;
    for the Extras tab, steps in postprocessing_disable_in_extras left out."""
    if classes is None:  # a class both registered and found in a script file runs once
        classes = list(dict.fromkeys([*builtin_step_classes(), *registered_steps(), *script_file_steps()]))
    steps = [cls() for cls in classes]
    order = list(shared.opts.postprocessing_operation_order or [])
    disabled = set(shared.opts.postprocessing_disable_in_extras or []) if for_extras else set()

    def key(step):
        position = order.index(step.name) if step.name in order else len(order)
        return position, step.order, step.name or ""
    return sorted((s for s in steps if s.name not in disabled), key=key)


def step_names() -> list[str]:
    """Every step's name in order (the choices of the postprocessing settings)."""
    return [step.name for step in ordered_steps(for_extras=False)]


_ui_defaults: dict[type, dict] = {}


def ui_defaults(step: ScriptPostprocessing) -> dict:
    """The values a step's controls start with (its arguments when a caller gives none), built
    once per class in a throwaway Blocks (Gradio layouts need one)."""
    cls = type(step)
    if cls not in _ui_defaults:
        import gradio as gr
        with gr.Blocks():
            controls = step.ui() or {}
        _ui_defaults[cls] = {name: getattr(control, "value", None) for name, control in controls.items()}
    return dict(_ui_defaults[cls])


def with_extension_defaults(steps: list[ScriptPostprocessing], args: dict[str, dict]) -> dict[str, dict]:
    """args plus, for every step not built in and not given, its controls' defaults (the API's
    fixed fields only name the built-in steps, as in A1111)."""
    builtin = set(builtin_step_classes())
    filled = dict(args)
    for step in steps:
        if step.name not in filled and type(step) not in builtin:
            filled[step.name] = ui_defaults(step)
    return filled


def run_steps(steps: list[ScriptPostprocessing], image, args: dict[str, dict],
              should_stop=lambda: False) -> list[PostprocessedImage]:
    """The main image and the copies steps make, in output order. args: step name -> kwargs."""
    pp = PostprocessedImage(image)
    for step in steps:
        step.process_firstpass(pp, **args.get(step.name, {}))
    outputs = [pp]
    for step in steps:
        if should_stop():
            break
        for item in list(outputs):
            if item.disable_processing:
                continue
            item.extra_images = []
            step.process(item, **args.get(step.name, {}))
            outputs += item.extra_images
            item.extra_images = []
    return outputs


def infotext(info: dict) -> str:
    """`key: value, ...` in insertion order; nulls dropped; a key equal to its value written bare."""
    parts = []
    for key, value in info.items():
        if value is None:
            continue
        parts.append(key if key == value else f"{key}: {infotext_utils.quote(value)}")
    return ", ".join(parts)


def html_info(text: str) -> str:
    return "<p>" + "<br>".join(html.escape(line) for line in text.split("\n")) + "</p>"
