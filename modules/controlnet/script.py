"""ControlNet as a built-in always-on Script, titled as the sd-webui-controlnet extension's
("ControlNet"): its script arguments are the units, one per slot (control_net_unit_count), so that
`alwayson_scripts: {"controlnet": {"args": [unit, ...]}}` takes the generic script-args path
(controlnet.md §2.3, extensions.md §5.5).

A slot holds an API unit dict, a ControlNetUnit (the UI's), or None (a disabled slot)."""
from modules import scripts, shared
from modules.controlnet import job, units


def parse_slots(args, init_image_available: bool = False) -> list[units.ControlNetUnit]:
    """The slots' values -> units, checked as far as can be known before the job: a bad unit raises
    UnitError or ControlNetError naming its index and field."""
    parsed = units.units_from_args([a for a in args], job.unit_count())
    job.check_units(parsed, init_image_available=init_image_available)
    return parsed


class ControlNetScript(scripts.Script):
    # sd-webui-controlnet clients of 2023 send `alwayson_scripts: {"controlnet": [unit, ...]}`
    api_accepts_bare_args_list = True

    def __init__(self):
        self._size = {}  # "width"/"height" -> the tab's slider, for "send dimensions"

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from modules.ui import controlnet_ui  # the job side never needs Gradio
        return controlnet_ui.create_accordion(self, is_img2img)

    def after_component(self, component, **kwargs):
        elem_id = kwargs.get("elem_id")
        for side in ("width", "height"):
            if elem_id == f"{self.tabname}_{side}":
                self._size[side] = component

    def size_components(self) -> list:
        return [self._size[side] for side in ("width", "height")] if len(self._size) == 2 else []

    def check_args(self, p, *args) -> list:
        """Called by the API before the job (scripts_routes): the slots parsed into units, or
        UnitError / ControlNetError (both ValueError), which the API answers with a 422."""
        init = bool(getattr(p, "init_images", None))
        parsed = parse_slots(args, init_image_available=init)
        return parsed + [None] * (len(args) - len(parsed))

    def process(self, p, *args):
        # units are parsed (again, cheaply for UI units) when the job prepares them, so that a bad
        # one stops the job with its message instead of being reported and skipped like a hook error
        if not p.controlnet_units:
            p.controlnet_units = [a for a in args if a is not None]
