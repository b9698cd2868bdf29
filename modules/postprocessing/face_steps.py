"""The Extras GFPGAN and CodeFormer steps (extras.md §3.3): restore, then blend with visibility."""
from PIL import Image

from modules import face_restoration
from modules.postprocessing.errors import PostprocessingError
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing


def blend(original: Image.Image, restored: Image.Image, visibility: float) -> Image.Image:
    """(1−v)·original + v·restored on RGB; alpha of the original kept."""
    if visibility >= 1:
        return restored
    mixed = Image.blend(original.convert("RGB"), restored.convert("RGB"), visibility)
    if original.mode == "RGBA":
        mixed.putalpha(original.getchannel("A"))
    return mixed


def _check_range(label: str, value) -> float:
    value = float(value or 0)
    if not 0 <= value <= 1:
        raise PostprocessingError(f"{label} must be between 0 and 1, got {value}")
    return value


class ScriptPostprocessingGfpGan(ScriptPostprocessing):
    name = "GFPGAN"
    order = 2000

    def ui(self):
        import gradio as gr
        with gr.Row(elem_id="extras_gfpgan"):
            enable = gr.Checkbox(label="GFPGAN", value=False, elem_id="extras_gfpgan_enable")
            visibility = gr.Slider(0.0, 1.0, step=0.001, label="Visibility", value=1.0,
                                   elem_id="extras_gfpgan_visibility")
        return {"enable": enable, "gfpgan_visibility": visibility}

    def check(self, enable=True, gfpgan_visibility=0.0, **args):
        if enable and _check_range("GFPGAN visibility", gfpgan_visibility) > 0:
            face_restoration.check_available("GFPGAN")

    def process(self, pp: PostprocessedImage, enable=True, gfpgan_visibility=0.0, **args):
        visibility = _check_range("GFPGAN visibility", gfpgan_visibility)
        if not enable or visibility == 0:
            return
        restored = face_restoration.restore_faces(pp.image, "GFPGAN")
        pp.image = blend(pp.image, restored, visibility)
        pp.info["GFPGAN visibility"] = round(visibility, 3)


class ScriptPostprocessingCodeFormer(ScriptPostprocessing):
    name = "CodeFormer"
    order = 3000

    def ui(self):
        import gradio as gr
        with gr.Row(elem_id="extras_codeformer"):
            enable = gr.Checkbox(label="CodeFormer", value=False, elem_id="extras_codeformer_enable")
            visibility = gr.Slider(0.0, 1.0, step=0.001, label="Visibility", value=1.0,
                                   elem_id="extras_codeformer_visibility")
            weight = gr.Slider(0.0, 1.0, step=0.001, label="Weight (0 = maximum effect, 1 = minimum effect)",
                               value=0, elem_id="extras_codeformer_weight")
        return {"enable": enable, "codeformer_visibility": visibility, "codeformer_weight": weight}

    def check(self, enable=True, codeformer_visibility=0.0, codeformer_weight=0.0, **args):
        _check_range("CodeFormer weight", codeformer_weight)
        if enable and _check_range("CodeFormer visibility", codeformer_visibility) > 0:
            face_restoration.check_available("CodeFormer")

    def process(self, pp: PostprocessedImage, enable=True, codeformer_visibility=0.0, codeformer_weight=0.0, **args):
        visibility = _check_range("CodeFormer visibility", codeformer_visibility)
        weight = _check_range("CodeFormer weight", codeformer_weight)
        if not enable or visibility == 0:
            return
        restored = face_restoration.restore_faces(pp.image, "CodeFormer", weight)
        pp.image = blend(pp.image, restored, visibility)
        pp.info["CodeFormer visibility"] = round(visibility, 3)
        pp.info["CodeFormer weight"] = round(weight, 3)
