"""A1111's Script API (extensions.md §5): the `Script` base class, the loader that imports every
script file of the program and of the enabled extensions, and the per-tab `ScriptRunner` that
builds their UI and calls their hooks inside the job.

Hooks other than `run` are called for always-on scripts only; a hook that raises is reported with
the script's file and title and the job goes on, except for a `GenerationError` (a script refusing
the job with a message for the user), which fails the job.
"""
import importlib.util
import inspect
import os
import re
import sys
from collections import namedtuple
from dataclasses import dataclass

from modules import errors, extensions, script_callbacks, shared
from modules.job_errors import GenerationError
from modules.dependency_order import order_after
from modules.paths import script_path

AlwaysVisible = object()  # returned by Script.show() for always-on scripts


@dataclass
class MaskBlendArgs:
    current_latent: object
    nmask: object
    init_latent: object
    mask: object
    blended_latent: object
    denoiser: object = None
    sigma: object = None

    def __post_init__(self):
        self.is_final_blend = self.denoiser is None


@dataclass
class PostSampleArgs:
    samples: object


@dataclass
class PostprocessImageArgs:
    image: object


@dataclass
class PostProcessMaskOverlayArgs:
    index: int
    mask_for_overlay: object
    overlay_image: object


@dataclass
class PostprocessBatchListArgs:
    images: list


@dataclass
class OnComponent:
    component: object


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None

    def title(self):
        raise NotImplementedError(f"{type(self).__name__} must define title()")

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        pass

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args):
        pass

    def post_sample(self, p, ps: PostSampleArgs, *args):
        pass

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs, *args):
        pass

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_hr(self, p, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id):
        """script_[<tab>_]<title>_<item_id>; the tab part only when the script shows the same in both."""
        same_in_both = self.show(True) == self.show(False)
        tab = f"{'img2img' if self.is_img2img else 'txt2img'}_" if same_in_both else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}{title}_{item_id}"


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True

    def elem_id(self, item_id):
        return f"{'img2img' if self.is_img2img else 'txt2img'}_{item_id}"


# -- loading ---------------------------------------------------------------------------------------

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])

scripts_data: list[ScriptClassData] = []
postprocessing_scripts_data: list[ScriptClassData] = []
loaded_modules: dict[str, object] = {}  # script path -> module
load_errors: list[str] = []              # messages of scripts that failed to import (shown in the UI)
current_basedir = script_path


def basedir() -> str:
    """The extension folder of the script being imported (the program folder otherwise)."""
    return current_basedir


def _root_scripts_dir() -> str:
    return os.path.join(script_path, "scripts")


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """Script files in load order: the root `scripts/` first, then each active extension's
    (extension order, files sorted), rearranged by metadata.ini Before/After (§2)."""
    entries = []  # (name, ScriptFile, ext or None)
    root = os.path.join(script_path, scriptdirname)
    if os.path.isdir(root):
        for f in sorted(os.listdir(root)):
            if os.path.splitext(f)[1].lower() == extension:
                entries.append((f"builtin/{f}", ScriptFile(script_path, f, os.path.join(root, f)), None))
    if include_extensions:
        for ext in extensions.active():
            for path in ext.list_files(scriptdirname, extension):
                f = os.path.basename(path)
                entries.append((f"{ext.canonical_name}/{f}", ScriptFile(ext.path, f, path), ext))
    return [entry[1] for entry in _order_scripts(entries)]


def _order_scripts(entries: list) -> list:
    names = [name for name, _, _ in entries]
    by_name = {name: entry for name, entry in zip(names, entries)}
    loaded_exts = {ext.canonical_name for _, _, ext in entries if ext is not None} | {"builtin"}

    def expand(item: str) -> list[str]:
        item = item.lower()
        if item in by_name:
            return [item]
        return [n for n in names if n.split("/")[0] == item]

    must_follow = {name: set() for name in names}
    for name, _, ext in entries:
        if ext is None:
            continue
        filename = name.split("/", 1)[1]
        section, specific = "scripts", f"scripts/{filename}"
        meta = ext.metadata
        for requirement in meta.get_script_requirements("Requires", section, specific):
            if not any(alt.lower() in by_name or alt.lower() in loaded_exts for alt in requirement.split("|")):
                errors.report(f"Script {name} requires {requirement}, which is not installed or not enabled")
        for item in meta.get_script_requirements("Before", section, specific):
            for other in expand(item):
                if other != name:
                    must_follow[other].add(name)
        for item in meta.get_script_requirements("After", section, specific):
            for other in expand(item):
                if other != name:
                    must_follow[name].add(other)
    return [by_name[name] for name in order_after(names, must_follow)]


def list_files_with_name(filename: str) -> list[str]:
    """`filename` in the program folder and in every active extension folder, where it exists."""
    found = []
    for folder in [script_path] + [ext.path for ext in extensions.active()]:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            found.append(path)
    return found


def _module_name(path: str) -> str:
    ext = extensions.find_extension(path)
    prefix = ext.canonical_name if ext else "builtin"
    return "webui_script_" + re.sub(r"\W", "_", f"{prefix}_{os.path.splitext(os.path.basename(path))[0]}")


def _import_script(script: ScriptFile):
    global current_basedir
    ext = extensions.find_extension(script.path)
    spec = importlib.util.spec_from_file_location(_module_name(script.path), script.path)
    module = importlib.util.module_from_spec(spec)
    current_basedir = script.basedir
    script_callbacks.current_script = (script.path, ext.canonical_name if ext else "base")
    added_path = script.basedir != script_path
    if added_path:
        sys.path.insert(0, script.basedir)
    try:
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        if added_path and script.basedir in sys.path:
            sys.path.remove(script.basedir)
        current_basedir = script_path
        script_callbacks.current_script = None


def _postprocessing_base():
    if importlib.util.find_spec("modules.scripts_postprocessing") is None:
        return None
    return importlib.import_module("modules.scripts_postprocessing").ScriptPostprocessing


def load_scripts() -> None:
    """Import every script file in load order; register the Script classes each one defines or imports."""
    global scripts_txt2img, scripts_img2img
    scripts_data.clear()
    postprocessing_scripts_data.clear()
    load_errors.clear()
    script_callbacks.clear_callbacks()
    extensions.list_extensions()
    rules = {}
    for ext in extensions.active():
        rules.update(ext.metadata.callback_rules())
    script_callbacks.ordering_rules = rules
    postprocessing_base = _postprocessing_base()
    for script in list_scripts("scripts", ".py"):
        try:
            module = _import_script(script)
        except Exception as e:  # noqa: BLE001 - a broken extension must not stop the program
            ext = extensions.find_extension(script.path)
            where = f"extension {ext.name}" if ext else "the program"
            message = f"Error loading script {script.filename} of {where}: {type(e).__name__}: {e}"
            load_errors.append(message)
            errors.report(message, exc_info=True)
            script_callbacks.current_script = (script.path, "")
            script_callbacks.remove_current_script_callbacks()
            script_callbacks.current_script = None
            continue
        loaded_modules[script.path] = module
        for obj in list(vars(module).values()):
            if not inspect.isclass(obj):
                continue
            if issubclass(obj, Script) and obj not in (Script, ScriptBuiltinUI):
                scripts_data.append(ScriptClassData(obj, script.path, script.basedir, module))
            elif postprocessing_base is not None and issubclass(obj, postprocessing_base) \
                    and obj is not postprocessing_base:
                postprocessing_scripts_data.append(ScriptClassData(obj, script.path, script.basedir, module))
    if postprocessing_base is not None:  # Extras runs these steps (modules.postprocessing.runner)
        importlib.import_module("modules.scripts_postprocessing").set_script_file_steps(
            [data.script_class for data in postprocessing_scripts_data])
    scripts_txt2img = ScriptRunner()
    scripts_img2img = ScriptRunner()


def reload_scripts() -> None:
    script_callbacks.before_reload_callback()
    script_callbacks.script_unloaded_callback()
    load_scripts()


# -- running ---------------------------------------------------------------------------------------

HOOKS = ("setup", "before_process", "process", "before_process_batch", "after_extra_networks_activate",
         "process_batch", "process_before_every_sampling", "postprocess", "postprocess_batch",
         "postprocess_batch_list", "post_sample", "on_mask_blend", "postprocess_image",
         "postprocess_maskoverlay", "postprocess_image_after_composite", "before_hr")


class ScriptRunner:
    def __init__(self):
        self.scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.titles: list[str] = []
        self.title_map: dict[str, Script] = {}
        self.infotext_fields: list = []
        self.paste_field_names: list = []
        self.inputs: list = [None]
        self.dropdown = None
        self.is_img2img = False
        self.ui_created = False
        self._hook_order: dict[str, list[Script]] = {}
        self._built_in_sections: list[Script] | None = None  # while a build is under way
        self.on_before_component_elem_id: dict = {}
        self.on_after_component_elem_id: dict = {}

    def initialize_scripts(self, is_img2img: bool) -> None:
        """A fresh instance of every registered Script class for this tab, sorted by show()."""
        self.scripts.clear()
        self.selectable_scripts.clear()
        self.alwayson_scripts.clear()
        self._hook_order.clear()
        self.is_img2img = is_img2img
        for data in scripts_data:
            try:
                script = data.script_class()
                script.filename = data.path
                script.is_txt2img = not is_img2img
                script.is_img2img = is_img2img
                script.tabname = "img2img" if is_img2img else "txt2img"
                visibility = script.show(is_img2img)
            except Exception:  # noqa: BLE001
                errors.report(f"Error creating script {data.script_class.__name__} from {data.path}", exc_info=True)
                continue
            if visibility is AlwaysVisible:
                script.alwayson = True
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        self.titles = [self._title(s) for s in self.selectable_scripts]
        for script in self.scripts:
            script.name = self._title(script).lower()
        self.title_map = {s.name: s for s in self.scripts}

    @staticmethod
    def _title(script: Script) -> str:
        try:
            return script.title()
        except Exception:  # noqa: BLE001
            errors.report(f"Error getting the title of {type(script).__name__} ({script.filename})", exc_info=True)
            return type(script).__name__

    # -- UI --------------------------------------------------------------------------------------
    def _create_script_ui(self, script: Script) -> None:
        import gradio as gr
        script.args_from = len(self.inputs)
        script.args_to = len(self.inputs)
        try:
            controls = script.ui(script.is_img2img)
        except Exception:  # noqa: BLE001
            errors.report(f"Error creating the UI of script {script.name} ({script.filename})", exc_info=True)
            controls = None
        controls = list(controls) if controls else []
        script.controls = controls
        for control in controls:
            if isinstance(control, gr.components.Component):
                control.custom_script_source = os.path.basename(script.filename)
        self.inputs += controls
        script.args_to = len(self.inputs)
        script.api_info = script_api_info(script)
        if script.infotext_fields:
            self.infotext_fields += script.infotext_fields
        if script.paste_field_names:
            self.paste_field_names += script.paste_field_names

    def _start_ui(self) -> None:
        self.inputs = [None]
        self.infotext_fields, self.paste_field_names = [], []
        self._built_in_sections = []

    def _create_alwayson_ui(self, script: Script) -> None:
        import gradio as gr
        if script.create_group:
            with gr.Group(visible=True) as group:
                self._create_script_ui(script)
            script.group = group
        else:
            self._create_script_ui(script)

    def setup_ui_for_section(self, section: str) -> None:
        """Build, where the caller stands, the always-on scripts whose `section` is this one (A1111's
        Script.section: soft inpainting asks for "inpaint"); setup_ui builds the rest later."""
        if self._built_in_sections is None:
            self._start_ui()
        for script in self.alwayson_scripts:
            if script.section == section and script not in self._built_in_sections:
                self._create_alwayson_ui(script)
                self._built_in_sections.append(script)

    def setup_ui(self) -> None:
        """Build the controls of every script of this tab (inside the caller's Blocks): always-on
        sections not built by setup_ui_for_section first, then the Script dropdown and one hidden
        group per selectable script."""
        import gradio as gr
        if self._built_in_sections is None:
            self._start_ui()
        for script in self.alwayson_scripts:
            if script not in self._built_in_sections:
                self._create_alwayson_ui(script)
        self._built_in_sections = None  # the next build starts afresh
        self.dropdown = gr.Dropdown(label="Script", choices=["None", *self.titles], value="None", type="index",
                                    elem_id="script_list")
        self.inputs[0] = self.dropdown
        for script in self.selectable_scripts:
            with gr.Group(visible=False) as group:
                self._create_script_ui(script)
            script.group = group
        groups = [s.group for s in self.selectable_scripts]
        if groups:
            self.dropdown.change(lambda index: [gr.Group(visible=(i == (index or 0) - 1)) for i in range(len(groups))],
                                 inputs=[self.dropdown], outputs=groups, queue=False, api_visibility="private")
        self.ui_created = True

    def default_args(self) -> list:
        """The flat argument list with every control's initial value (what the API starts from)."""
        values = [0]
        for control in self.inputs[1:]:
            values.append(getattr(control, "value", None))
        return values

    # -- lookup ----------------------------------------------------------------------------------
    def script(self, title: str) -> Script | None:
        return self.title_map.get((title or "").lower())

    def set_named_arg(self, args, script_name: str, arg_elem_id: str, value, fuzzy: bool = False):
        script = self.script(script_name)
        if script is None:
            raise RuntimeError(f"script {script_name} not found")
        for i, control in enumerate(script.controls or []):
            elem_id = getattr(control, "elem_id", None) or ""
            if (arg_elem_id in elem_id) if fuzzy else (elem_id == arg_elem_id):
                index = script.args_from + i
                new = list(args)
                new[index] = value
                return type(args)(new) if isinstance(args, tuple) else new
        raise RuntimeError(f"arg_elem_id {arg_elem_id} not found in script {script_name}")

    # -- the job ---------------------------------------------------------------------------------
    def run(self, p, *args):
        """The selectable script chosen by args[0] (1-based; 0 = None) replaces the pipeline."""
        index = args[0] if args else 0
        if not index:
            return None
        script = self.selectable_scripts[index - 1]
        script_args = args[script.args_from:script.args_to]
        return script.run(p, *script_args)

    def hook_callbacks(self, method: str, *, enable_user_sort: bool = True) -> list:
        """ScriptCallbacks (callback = the script) of the always-on scripts that override `method`,
        named <ext>/<file>/script_<method>/<ClassName> and ordered as in §6.3."""
        items = []
        for script in self.alwayson_scripts:
            if getattr(type(script), method, None) is getattr(Script, method):
                continue  # the base class's no-op: nothing to call
            ext = extensions.find_extension(script.filename or "")
            name = f"{ext.canonical_name if ext else 'base'}/{os.path.basename(script.filename or '')}/" \
                   f"script_{method}/{type(script).__name__}"
            items.append(script_callbacks.ScriptCallback(script.filename, script, name))
        return script_callbacks.sort_callbacks(f"script_{method}", items, enable_user_sort=enable_user_sort)

    def ordered_hook(self, method: str) -> list[Script]:
        """Always-on scripts that override `method`, in the order of §6.3 (category script_<method>)."""
        cached = self._hook_order.get(method)
        if cached is not None:
            return cached
        ordered = [c.callback for c in self.hook_callbacks(method)]
        self._hook_order[method] = ordered
        return ordered

    def _call(self, method: str, p, *pre, **kwargs) -> None:
        scripts = self.ordered_hook(method)
        if not scripts:
            return
        args = p.script_args
        for script in scripts:
            try:
                getattr(script, method)(p, *pre, *args[script.args_from:script.args_to], **kwargs)
            except GenerationError:  # a script refusing the job on purpose, with a message for the user
                raise
            except Exception:  # noqa: BLE001 - one script's failure must not stop the job
                errors.report(f"Error running {method}: {script.filename} ({script.name})", exc_info=True)

    def setup_scrips(self, p, *, is_ui: bool = True) -> None:
        for script in self.ordered_hook("setup"):
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script.setup(p, *p.script_args[script.args_from:script.args_to])
            except Exception:  # noqa: BLE001
                errors.report(f"Error running setup: {script.filename} ({script.name})", exc_info=True)

    setup_scripts = setup_scrips

    def before_process(self, p):
        self._call("before_process", p)

    def process(self, p):
        self._call("process", p)

    def before_process_batch(self, p, **kwargs):
        self._call("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs):
        self._call("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._call("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._call("process_before_every_sampling", p, **kwargs)

    def postprocess(self, p, processed):
        self._call("postprocess", p, processed)

    def postprocess_batch(self, p, images, **kwargs):
        self._call("postprocess_batch", p, images=images, **kwargs)

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs):
        self._call("postprocess_batch_list", p, pp, **kwargs)

    # the core's entry points for the per-batch image hooks (it does not import this module)
    def images_after_batch(self, p, samples, batch_number: int) -> list:
        """postprocess_batch on the B×3×H×W tensor, then postprocess_batch_list on its rows."""
        self.postprocess_batch(p, samples, batch_number=batch_number)
        pp = PostprocessBatchListArgs(list(samples))
        self.postprocess_batch_list(p, pp, batch_number=batch_number)
        return pp.images

    def image_after_postprocess(self, p, image):
        pp = PostprocessImageArgs(image)
        self.postprocess_image(p, pp)
        return pp.image

    # -- inpainting and sampling hooks' entry points for the core (issue 8) --
    def blend_latent(self, p, current, init_latent, mask, nmask, blended, denoiser=None, sigma=None):
        """on_mask_blend around one latent blend; returns the (possibly replaced) blended latent."""
        if not self.ordered_hook("on_mask_blend"):
            return blended
        mba = MaskBlendArgs(current, nmask, init_latent, mask, blended, denoiser=denoiser, sigma=sigma)
        self.on_mask_blend(p, mba)
        return mba.blended_latent

    def samples_after_sampling(self, p, samples):
        """post_sample on the batch's final latent, before VAE decode."""
        if not self.ordered_hook("post_sample"):
            return samples
        ps = PostSampleArgs(samples)
        self.post_sample(p, ps)
        return ps.samples

    def mask_overlay(self, p, index: int, mask_for_overlay, overlay_image) -> tuple:
        """postprocess_maskoverlay for one image: (mask_for_overlay, overlay_image)."""
        ppmo = PostProcessMaskOverlayArgs(index, mask_for_overlay, overlay_image)
        self.postprocess_maskoverlay(p, ppmo)
        return ppmo.mask_for_overlay, ppmo.overlay_image

    def image_after_composite(self, p, image):
        pp = PostprocessImageArgs(image)
        self.postprocess_image_after_composite(p, pp)
        return pp.image
    # -- end of issue 8's entry points --

    def post_sample(self, p, ps: PostSampleArgs):
        self._call("post_sample", p, ps)

    def on_mask_blend(self, p, mba: MaskBlendArgs):
        self._call("on_mask_blend", p, mba)

    def postprocess_image(self, p, pp: PostprocessImageArgs):
        self._call("postprocess_image", p, pp)

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs):
        self._call("postprocess_maskoverlay", p, ppmo)

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs):
        self._call("postprocess_image_after_composite", p, pp)

    def before_hr(self, p):
        self._call("before_hr", p)

    def before_component(self, component, **kwargs):
        elem_id = kwargs.get("elem_id")
        for script in self.scripts:
            try:
                script.before_component(component, **kwargs)
            except Exception:  # noqa: BLE001
                errors.report(f"Error running before_component: {script.filename}", exc_info=True)
            for wanted, callback in script.on_before_component_elem_id or []:
                if wanted == elem_id:
                    _safe_component_callback(callback, component, script)

    def after_component(self, component, **kwargs):
        elem_id = kwargs.get("elem_id")
        for script in self.scripts:
            try:
                script.after_component(component, **kwargs)
            except Exception:  # noqa: BLE001
                errors.report(f"Error running after_component: {script.filename}", exc_info=True)
            for wanted, callback in script.on_after_component_elem_id or []:
                if wanted == elem_id:
                    _safe_component_callback(callback, component, script)


def _safe_component_callback(callback, component, script) -> None:
    try:
        callback(OnComponent(component=component))
    except Exception:  # noqa: BLE001
        errors.report(f"Error running an elem_id component callback of {script.filename}", exc_info=True)


def script_api_info(script: Script) -> dict:
    """The script's entry in GET /script-info (api.md): name, flags and its controls' details."""
    args = []
    for control in script.controls or []:
        args.append({
            "label": getattr(control, "label", None),
            "value": _jsonable(getattr(control, "value", None)),
            "minimum": getattr(control, "minimum", None),
            "maximum": getattr(control, "maximum", None),
            "step": getattr(control, "step", None),
            "choices": _choices(control),
        })
    return {"name": script.name, "is_alwayson": script.alwayson, "is_img2img": script.is_img2img, "args": args}


def _choices(control):
    choices = getattr(control, "choices", None)
    if not choices:
        return None
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return None


scripts_txt2img = ScriptRunner()
scripts_img2img = ScriptRunner()
scripts_postproc = None  # the Extras tab's runner (built with the Extras tab)
scripts_current = None


def runner_for(is_img2img: bool) -> ScriptRunner:
    return scripts_img2img if is_img2img else scripts_txt2img


def process_with_scripts(p):
    """Run a job with its scripts: setup, then the chosen selectable script's run() or, without
    one, the normal pipeline. Call it on the job queue's worker (as process_images)."""
    from modules import processing
    runner = p.scripts
    if runner is None:
        return processing.process_images(p)
    runner.setup_scrips(p, is_ui=not getattr(p, "is_api", False))
    processed = runner.run(p, *p.script_args)
    if processed is None:
        processed = processing.process_images(p)
    return processed
