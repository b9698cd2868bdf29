"""Soft inpainting, A1111's built-in always-on script (img2img only): blends the original and the
generated latents with a gradient mask during sampling, then brings the original pixels back where
the result did not change. The arithmetic lives in modules.img2img.soft_inpainting."""
import gradio as gr

from modules import scripts
from modules.img2img import soft_inpainting as soft
from modules.ui_components import InputAccordion

EXPLANATION = """The mask's grey levels decide how much of the original survives, so new and old content
merge without a visible seam. Works best with a large **Mask blur**."""

HELP = """
- **Schedule bias**: shifts when the original content is preserved during denoising; 0 = constant,
  higher values hold it more at the start and less at the end.
- **Preservation strength**: how strongly the original content is kept (0 = not at all).
- **Transition contrast boost**: how sharp the transition between original and new content is;
  it keeps the blended latents from losing contrast.
- **Mask influence**: how much the mask shapes the final composite (0 = only the difference counts).
- **Difference threshold**: how much a region must change before the new content shows.
- **Difference contrast**: how sharply the composite switches around that threshold.
"""


def _uses_inpainting(p) -> bool:
    return not p.is_txt2img and (getattr(p, "image_mask", None) is not None or getattr(p, "nmask", None) is not None)


class Script(scripts.Script):
    section = "inpaint"

    def title(self):
        return "Soft Inpainting"

    def show(self, is_img2img):
        return scripts.AlwaysVisible if is_img2img else False

    def ui(self, is_img2img):
        if not is_img2img:
            return None
        with InputAccordion(False, label="Soft inpainting", elem_id=self.elem_id("soft_inpainting_enabled")) \
                as enabled:
            gr.Markdown(EXPLANATION)
            sliders = []
            for index, (label, name, low, high, step, default, _) in enumerate(soft.PARAMETERS):
                if index == 3:
                    gr.Markdown("### Pixel Composite Settings")
                sliders.append(gr.Slider(label=label, minimum=low, maximum=high, step=step, value=default,
                                         elem_id=self.elem_id(name)))
            with gr.Accordion("Help", open=False):
                gr.Markdown(HELP)
        self.infotext_fields = [(enabled, lambda params: soft.ENABLED_KEY in params)]
        self.infotext_fields += [(slider, spec[6]) for slider, spec in zip(sliders, soft.PARAMETERS)]
        self.paste_field_names = [soft.ENABLED_KEY] + [spec[6] for spec in soft.PARAMETERS]
        return [enabled, *sliders]

    def process(self, p, enabled, *values):
        if not enabled or not _uses_inpainting(p):
            return
        p.mask_round = False  # the latent mask keeps its blurred gradient
        settings = soft.Settings.from_values(values)
        settings.add_generation_params(p.extra_generation_params)
        p.soft_inpainting = settings

    def on_mask_blend(self, p, mba, enabled, *values):
        settings = getattr(p, "soft_inpainting", None)
        if not enabled or settings is None:
            return
        if mba.is_final_blend:
            if p.overlay_sources:  # the pixel composite (post_sample) restores the original instead
                mba.blended_latent = mba.current_latent
            return
        weight = soft.step_weight(mba.nmask, mba.sigma, settings)
        mba.blended_latent = soft.latent_blend(mba.init_latent, mba.current_latent, weight,
                                               settings.inpaint_detail_preservation)

    def post_sample(self, p, ps, enabled, *values):
        settings = getattr(p, "soft_inpainting", None)
        p.soft_inpainting_overlays = None
        if not enabled or settings is None or p.nmask is None or not p.overlay_sources:
            return
        masks = soft.latent_difference_masks(p.init_latent, ps.samples, p.nmask, settings)
        p.soft_inpainting_overlays = soft.overlay_layers(p, masks)

    def postprocess_maskoverlay(self, p, ppmo, enabled, *values):
        found = getattr(p, "soft_inpainting_overlays", None)
        if not enabled or found is None or ppmo.index >= len(found[0]):
            return
        ppmo.mask_for_overlay = found[0][ppmo.index]
        ppmo.overlay_image = found[1][ppmo.index]
