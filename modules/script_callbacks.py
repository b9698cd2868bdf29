"""Extension callbacks under A1111's names (extensions.md §6).

`on_<category>(fn, *, name=None)` registers a callback; the core calls `<category>_callback(...)`.
Each callback runs on its own: one that raises is reported with its name (which names the
extension and file that registered it) and the others still run.
This module sits on a low floor: it imports nothing of the program but `errors` and `dependency_order`.
"""
import inspect
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from modules import errors
from modules.dependency_order import order_after


# -- parameter objects ---------------------------------------------------------------------------

class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image        # PIL image about to be saved
        self.p = p                # the processing object, or None
        self.filename = filename  # full path the image goes to
        self.pnginfo = pnginfo    # dict of text chunks (infotext under 'parameters')


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise, self.x, self.xi = noise, x, xi


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x = x                          # latent batch about to go through the UNet
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x  # the UNet's denoised outputs, before the CFG combination
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x  # the guided prediction
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params):
        self.txt2img_preview_params = txt2img_preview_params


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs, self.cols, self.rows = imgs, cols, rows


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


# -- registry ------------------------------------------------------------------------------------

@dataclass
class ScriptCallback:
    script: str          # file that registered it
    callback: Callable
    name: str = None     # <extension>/<file>/<category>[/<name>]


CATEGORIES = (
    "app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
    "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
    "before_component", "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui",
    "list_optimizers", "list_unets", "before_token_counter",
)

callback_map: dict[str, list[ScriptCallback]] = {f"callbacks_{c}": [] for c in CATEGORIES}

# Set by the script loader while a script file is imported: (file path, extension canonical name).
current_script: tuple[str, str] | None = None

# metadata.ini [callbacks/...] rules: callback name -> (before names, after names); set by the loader.
ordering_rules: dict[str, tuple[list[str], list[str]]] = {}

# Returns the user's `prioritized_callbacks_<category>` list; set by the program (reads shared.opts).
prioritized_names: Callable[[str], list] = lambda category: []

_ordered_cache: dict[str, list[ScriptCallback]] = {}


def _caller_file() -> str:
    for frame in inspect.stack()[2:]:
        if frame.filename != __file__:
            return frame.filename
    return "unknown"


def add_callback(callbacks: list, fun: Callable, *, name: str | None = None, category: str,
                 filename: str | None = None) -> None:
    if not callable(fun):
        raise TypeError(f"{category} callback must be callable, got {fun!r}")
    if filename is None:
        filename = current_script[0] if current_script else _caller_file()
    extension = current_script[1] if current_script else "base"
    stem = os.path.basename(filename)
    unique = base = f"{extension}/{stem}/{category}" + (f"/{name}" if name else "")
    taken = {c.name for c in callbacks}
    n = 0
    while unique in taken:
        n += 1
        unique = f"{base}-{n}"
    callbacks.append(ScriptCallback(filename, fun, unique))
    _ordered_cache.clear()


def sort_callbacks(category: str, unordered: list, *, enable_user_sort: bool = True) -> list:
    """Registration order, then metadata.ini Before/After rules, then the user's priority list."""
    names = [c.name for c in unordered]
    by_name = {c.name: c for c in unordered}
    after: dict[str, set] = defaultdict(set)  # name -> names that must run before it
    for name in names:
        before_list, after_list = ordering_rules.get(name, ([], []))
        for other in before_list:
            if other in by_name:
                after[other].add(name)
        for other in after_list:
            if other in by_name:
                after[name].add(other)
    ordered = [by_name[name] for name in order_after(names, after)]
    if enable_user_sort:
        wanted = [n for n in (prioritized_names(category) or []) if n in by_name]
        ordered = [by_name[n] for n in wanted] + [c for c in ordered if c.name not in wanted]
    return ordered


def ordered_callbacks(category: str, unordered=None, *, enable_user_sort: bool = True) -> list:
    if unordered is None:
        unordered = callback_map[f"callbacks_{category}"]
    # only the order the callbacks run in is cached: the Settings page asks for the order without
    # the user's priority list, which must not become the running order
    cacheable = enable_user_sort and unordered is callback_map.get(f"callbacks_{category}")
    if cacheable and category in _ordered_cache and len(_ordered_cache[category]) == len(unordered):
        return _ordered_cache[category]
    result = sort_callbacks(category, unordered, enable_user_sort=enable_user_sort)
    if cacheable:
        _ordered_cache[category] = result
    return result


def report_exception(c: ScriptCallback, job: str) -> None:
    errors.report(f"Error running callback {c.name} ({job}) from {c.script}", exc_info=True)


def _run(category: str, *args):
    results = []
    for c in ordered_callbacks(category):
        try:
            results.append(c.callback(*args))
        except Exception:  # noqa: BLE001 - an extension's failure is reported, never fatal
            report_exception(c, f"{category}_callback")
    return results


def has_callbacks(category: str) -> bool:
    return bool(callback_map[f"callbacks_{category}"])


def clear_callbacks() -> None:
    for callbacks in callback_map.values():
        callbacks.clear()
    _ordered_cache.clear()


def remove_current_script_callbacks() -> None:
    """Drop what the file being imported registered (a script that failed half-way)."""
    filename = current_script[0] if current_script else _caller_file()
    for callbacks in callback_map.values():
        callbacks[:] = [c for c in callbacks if c.script != filename]
    _ordered_cache.clear()


def remove_callbacks_for_function(callback_func: Callable) -> None:
    for callbacks in callback_map.values():
        callbacks[:] = [c for c in callbacks if c.callback != callback_func]
    _ordered_cache.clear()


# -- dispatchers (called by the core) -------------------------------------------------------------

def app_started_callback(demo, app) -> None:
    for c in ordered_callbacks("app_started"):
        try:
            c.callback(demo, app)
        except Exception:  # noqa: BLE001
            report_exception(c, "app_started_callback")


def before_reload_callback() -> None:
    _run("before_reload")


def model_loaded_callback(sd_model) -> None:
    _run("model_loaded", sd_model)


def ui_tabs_callback() -> list:
    tabs = []
    for result in _run("ui_tabs"):
        tabs += result or []
    return tabs


def ui_train_tabs_callback(params: UiTrainTabParams) -> None:
    _run("ui_train_tabs", params)


def ui_settings_callback() -> None:
    _run("ui_settings")


def before_image_saved_callback(params: ImageSaveParams) -> None:
    _run("before_image_saved", params)


def image_saved_callback(params: ImageSaveParams) -> None:
    _run("image_saved", params)


def extra_noise_callback(params: ExtraNoiseParams) -> None:
    _run("extra_noise", params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    _run("cfg_denoised", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    _run("cfg_after_cfg", params)


def before_component_callback(component, **kwargs) -> None:
    for c in ordered_callbacks("before_component"):
        try:
            c.callback(component, **kwargs)
        except Exception:  # noqa: BLE001
            report_exception(c, "before_component_callback")


def after_component_callback(component, **kwargs) -> None:
    for c in ordered_callbacks("after_component"):
        try:
            c.callback(component, **kwargs)
        except Exception:  # noqa: BLE001
            report_exception(c, "after_component_callback")


def image_grid_callback(params: ImageGridLoopParams) -> None:
    _run("image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict) -> None:
    _run("infotext_pasted", infotext, params)


def script_unloaded_callback() -> None:
    _run("script_unloaded")


def before_ui_callback() -> None:
    _run("before_ui")


def collect_with_sources(category: str) -> list[tuple[str, object]]:
    """(callback name, item) for every item the `category` callbacks append to their list: the
    name says which extension offered an optimisation or UNet when its apply/create fails."""
    found = []
    for c in ordered_callbacks(category):
        res: list = []
        try:
            c.callback(res)
        except Exception:  # noqa: BLE001 - an extension's failure is reported, never fatal
            report_exception(c, f"{category}_callback")
        found += [(c.name, item) for item in res]
    return found


def list_optimizers_callback() -> list:
    return [item for _name, item in collect_with_sources("list_optimizers")]


def list_unets_callback() -> list:
    return [item for _name, item in collect_with_sources("list_unets")]


def before_token_counter_callback(params: BeforeTokenCounterParams) -> None:
    _run("before_token_counter", params)


# -- registration ----------------------------------------------------------------------------------

def _register(category: str):
    def on(callback: Callable, *, name: str | None = None) -> None:
        add_callback(callback_map[f"callbacks_{category}"], callback, name=name, category=category)
    on.__name__ = f"on_{category}"
    on.__doc__ = f"Register a callback for '{category}' (extensions.md §6.1)."
    return on


on_app_started = _register("app_started")
on_before_reload = _register("before_reload")
on_model_loaded = _register("model_loaded")
on_ui_tabs = _register("ui_tabs")
on_ui_train_tabs = _register("ui_train_tabs")
on_ui_settings = _register("ui_settings")
on_before_image_saved = _register("before_image_saved")
on_image_saved = _register("image_saved")
on_extra_noise = _register("extra_noise")
on_cfg_denoiser = _register("cfg_denoiser")
on_cfg_denoised = _register("cfg_denoised")
on_cfg_after_cfg = _register("cfg_after_cfg")
on_before_component = _register("before_component")
on_after_component = _register("after_component")
on_image_grid = _register("image_grid")
on_infotext_pasted = _register("infotext_pasted")
on_script_unloaded = _register("script_unloaded")
on_before_ui = _register("before_ui")
on_list_optimizers = _register("list_optimizers")
on_list_unets = _register("list_unets")
on_before_token_counter = _register("before_token_counter")
