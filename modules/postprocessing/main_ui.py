"""Postprocessing steps inside txt2img/img2img (setting `postprocessing_enable_in_main_ui`,
extras.md §4.6): each chosen Extras step becomes an always-on script of both tabs. Only the step's
`process` runs, on every finished image (after the img2img overlay; no first pass); its info keys join the generation infotext.

The steps are chosen when the scripts are loaded (start-up, Reload UI), like A1111.
"""
import inspect

from modules import scripts, shared
from modules.face_restoration import FaceRestorationUnavailable
from modules.job_errors import GenerationError
from modules.postprocessing import runner
from modules.postprocessing.errors import PostprocessingError
from modules.scripts_postprocessing import PostprocessedImage
from modules.upscaling import UnknownUpscaler, UpscalerUnavailable

# what a step raises for a user's choice (bad value, missing weights): the job fails with it
_USER_ERRORS = (PostprocessingError, UnknownUpscaler, UpscalerUnavailable, FaceRestorationUnavailable)


class ScriptPostprocessingForMainUI(scripts.Script):
    """One postprocessing step as an always-on script; subclasses set `step_class`."""
    step_class: type = None
    create_group = False

    def __init__(self):
        self.step = self.step_class()
        self.control_names: list[str] = []

    def title(self):
        return self.step.name

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        import gradio as gr
        with gr.Accordion(self.step.name, open=False, elem_id=self.elem_id("postprocessing")):
            controls = self.step.ui() or {}
        self.control_names = list(controls)
        return list(controls.values())

    def _kwargs(self, args) -> dict:
        return dict(zip(self.control_names, args))

    def _fail(self, error: Exception):
        raise GenerationError(f"{self.step.name} (postprocessing in {self.tabname}): {error}") from error

    def before_process(self, p, *args):
        """Check the step's choices before anything is sampled (a missing upscaler file should not
        cost the user a whole generation first)."""
        check = getattr(self.step, "check", None)
        if check is None:
            return
        try:
            check(**self._kwargs(args))
        except _USER_ERRORS as e:
            self._fail(e)

    def postprocess_image_after_composite(self, p, pp, *args):
        # after the inpainting overlay: an upscaled image no longer matches the init image's size
        item = PostprocessedImage(pp.image)
        try:
            self.step.process(item, **self._kwargs(args))
        except _USER_ERRORS as e:
            self._fail(e)
        p.extra_generation_params.update(item.info)
        pp.image = item.image


def enabled_step_classes() -> list[type]:
    """The steps named in postprocessing_enable_in_main_ui, in the Extras order."""
    wanted = set(shared.opts.postprocessing_enable_in_main_ui or [])
    return [type(step) for step in runner.ordered_steps(for_extras=False) if step.name in wanted]


def script_class_data() -> list:
    """ScriptClassData for the chosen steps, to add to the loaded scripts."""
    found = []
    for step_class in enabled_step_classes():
        wrapper = type(f"ScriptPostprocessingForMainUI{step_class.__name__}", (ScriptPostprocessingForMainUI,),
                       {"step_class": step_class})
        path = inspect.getfile(step_class)
        found.append(scripts.ScriptClassData(wrapper, path, scripts.basedir(), inspect.getmodule(step_class)))
    return found
