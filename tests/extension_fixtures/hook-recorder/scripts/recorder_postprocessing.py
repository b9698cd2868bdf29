"""An Extras step of the hook-recorder extension: writes its UI values into the postprocessing
infotext, and with `mirror` on flips the image, so a test sees the step ran with its arguments."""
import gradio as gr
from PIL import ImageOps

from modules import scripts_postprocessing
from modules.ui_components import FormRow


class ScriptPostprocessingRecorderStamp(scripts_postprocessing.ScriptPostprocessing):
    name = "Recorder stamp"
    order = 5000

    def ui(self):
        with FormRow():
            enable = gr.Checkbox(label="Stamp", value=True, elem_id="extras_recorder_stamp_enable")
            strength = gr.Slider(label="Stamp strength", minimum=0, maximum=1, step=0.05, value=0.35,
                                 elem_id="extras_recorder_stamp_strength")
            mirror = gr.Checkbox(label="Mirror", value=False, elem_id="extras_recorder_stamp_mirror")
        return {"enable": enable, "strength": strength, "mirror": mirror}

    def process(self, pp, enable=False, strength=0.0, mirror=False):
        if not enable:
            return
        pp.info["Recorder stamp"] = strength
        if mirror:
            pp.image = ImageOps.mirror(pp.image)
