"""Scripts in the API (api.md §8.5): `script_name` + `script_args` and `alwayson_scripts` filled into
the flat script-argument list as A1111 does, checked against each script's controls (a wrong type
is a 422 naming the script; values beyond its controls are dropped with a warning); GET /scripts,
/script-info, /extensions."""
import logging

import gradio as gr
from fastapi import APIRouter, HTTPException

from modules import extensions, scripts

# Built-in always-on UI parts of A1111 whose values come from the request fields here: an entry
# naming them is accepted and changes nothing (api.md §8.5).
BUILTIN_ALWAYSON_SCRIPTS = ("sampler", "seed", "refiner", "comments")

log = logging.getLogger(__name__)


def _type_problem(control, value) -> str | None:
    """What is wrong with `value` for this control, or None when it fits."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(control, gr.Checkbox):
        return None if isinstance(value, bool) else "a boolean"
    if isinstance(control, (gr.Slider, gr.Number)):
        return None if number else "a number"
    if isinstance(control, gr.CheckboxGroup):
        return None if isinstance(value, list) else "a list"
    if isinstance(control, gr.Dropdown):
        if getattr(control, "multiselect", False):
            return None if isinstance(value, list) else "a list"
        return None if isinstance(value, str) or (number and float(value).is_integer()) or value is None \
            else "a string (or an index)"
    if isinstance(control, gr.Radio):
        return None if isinstance(value, str) or (number and float(value).is_integer()) else "a string (or an index)"
    if isinstance(control, (gr.Textbox, gr.Code)):
        return None if isinstance(value, str) else "a string"
    return None  # HTML, images, custom components: the script decides


def _fill(script, values, target: list, label: str) -> None:
    if not isinstance(values, list):
        raise HTTPException(422, f"{label} for script '{script.name}' must be a list")
    count = script.args_to - script.args_from
    if len(values) > count:
        # api.md §8.5 (A1111's rule; controlnet.md §2.3: more units than slots): the extra values are
        # dropped, said once in the log so that a client sending too many can find out why
        log.warning("%s: script '%s' takes %d arguments, got %d; the last %d dropped",
                    label, script.name, count, len(values), len(values) - count)
        values = values[:count]
    for i, value in enumerate(values):
        control = script.controls[i]
        problem = _type_problem(control, value)
        if problem:
            name = getattr(control, "label", None) or f"#{i}"
            raise HTTPException(422, f"Script '{script.name}' argument {i} ({name}) must be {problem}, "
                                     f"got {value!r}")
        target[script.args_from + i] = value


def script_args_for(runner: scripts.ScriptRunner, script_name: str | None, script_args, alwayson_scripts) -> list:
    """The flat argument list for a job: defaults, then the selectable script's, then always-on ones."""
    args = runner.default_args()
    if script_name:
        script = next((s for s in runner.selectable_scripts if s.name == script_name.lower()), None)
        if script is None:
            raise HTTPException(422, f"Script '{script_name}' not found")
        _fill(script, list(script_args or []), args, "script_args")
        args[0] = runner.selectable_scripts.index(script) + 1
    for title, entry in (alwayson_scripts or {}).items():
        script = next((s for s in runner.alwayson_scripts if s.name == title.lower()), None)
        if script is None:
            if title.lower() in BUILTIN_ALWAYSON_SCRIPTS:
                continue
            raise HTTPException(422, f"always on script {title} not found")
        if isinstance(entry, list) and getattr(script, "api_accepts_bare_args_list", False):
            entry = {"args": entry}  # older clients send the units list itself (ControlNet)
        if not isinstance(entry, dict):
            raise HTTPException(422, f"alwayson_scripts['{title}'] must be an object like {{\"args\": [...]}}")
        if "args" in entry:
            _fill(script, entry["args"], args, f"alwayson_scripts['{title}'].args")
    return args


def attach_scripts(p, is_img2img: bool, script_name, script_args, alwayson_scripts) -> None:
    runner = scripts.runner_for(is_img2img)
    p.script_args = script_args_for(runner, script_name, script_args, alwayson_scripts)
    p.scripts = runner
    p.is_api = True
    check_script_args(p, runner)


def check_script_args(p, runner: scripts.ScriptRunner) -> None:
    """Built-in always-on scripts (ControlNet) may define check_args(p, *args) -> args: their
    arguments parsed and checked before the job; a ValueError is a 422 with its message."""
    for script in runner.alwayson_scripts:
        check = getattr(script, "check_args", None)
        if check is None:
            continue
        try:
            checked = check(p, *p.script_args[script.args_from:script.args_to])
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        p.script_args[script.args_from:script.args_to] = checked


def list_scripts() -> dict:
    """Scripts that have a UI, selectable and always-on (api.md §12): clients detect ControlNet so."""
    return {"txt2img": [s.name for s in scripts.scripts_txt2img.scripts],
            "img2img": [s.name for s in scripts.scripts_img2img.scripts]}


def script_info() -> list:
    return [s.api_info for runner in (scripts.scripts_txt2img, scripts.scripts_img2img)
            for s in runner.scripts if s.api_info is not None]


def list_extensions() -> list:
    found = []
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        found.append({"name": ext.name, "remote": ext.remote, "branch": ext.branch,
                      "commit_hash": ext.commit_hash, "version": ext.version, "commit_date": ext.commit_date,
                      "enabled": ext.enabled})
    return found


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")
    router.add_api_route("/scripts", list_scripts, methods=["GET"])
    router.add_api_route("/script-info", script_info, methods=["GET"])
    router.add_api_route("/extensions", list_extensions, methods=["GET"])
    return router
