"""Soft inpainting (the built-in always-on script) and the img2img mask hooks it rides on:
on_mask_blend, post_sample, postprocess_maskoverlay, postprocess_image_after_composite."""
import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, scripts, sd_models
from modules.img2img import soft_inpainting as soft
from tests.unit.test_txt2img import NEGATIVE, PROMPT

DEFAULTS = [1.0, 0.5, 4.0, 0.0, 0.5, 2.0]
BOX = (24, 24, 40, 40)


@pytest.fixture(scope="module")
def shared(webui_session):
    from modules.extension_loading import startup
    startup.setup_scripts_without_ui()
    info = sd_models.find_checkpoint("tiny-sd1")
    webui_session.job_queue.run(lambda: webui_session.model_holder.switch_to(info))
    return webui_session


def init_image(seed=5):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def box_mask():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, BOX)
    return mask


def make_p(**kwargs):
    fields = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=4, width=64, height=64, seed=77, cfg_scale=7.0,
                  sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True, init_images=[init_image()],
                  denoising_strength=0.75, mask=box_mask(), mask_blur=4, inpaint_full_res=False, inpainting_fill=1)
    fields.update(kwargs)
    return processing.StableDiffusionProcessingImg2Img(**fields)


def with_soft_inpainting(p, enabled, values=DEFAULTS):
    runner = scripts.scripts_img2img
    script = runner.script("soft inpainting")
    args = runner.default_args()
    args[script.args_from:script.args_to] = [enabled, *values]
    p.scripts, p.script_args = runner, args
    return p


def far_from_box(margin=12):
    yy, xx = np.mgrid[0:64, 0:64]
    x1, y1, x2, y2 = BOX
    return (xx < x1 - margin) | (xx >= x2 + margin) | (yy < y1 - margin) | (yy >= y2 + margin)


def test_script_is_built_in_with_a1111_labels_and_defaults(shared):
    runner = scripts.scripts_img2img
    script = runner.script("soft inpainting")
    assert script is not None and script.alwayson and script.title() == "Soft Inpainting"
    assert scripts.scripts_txt2img.script("soft inpainting") is None  # img2img only
    controls = script.controls
    assert controls[0].label == "Soft inpainting" and controls[0].value is False
    got = [(c.label, c.minimum, c.maximum, c.step, c.value) for c in controls[1:]]
    assert got == [("Schedule bias", 0, 8, 0.1, 1), ("Preservation strength", 0, 8, 0.05, 0.5),
                   ("Transition contrast boost", 1, 32, 0.5, 4), ("Mask influence", 0, 1, 0.05, 0),
                   ("Difference threshold", 0, 8, 0.25, 0.5), ("Difference contrast", 0, 8, 0.25, 2)]


def test_off_is_identical_to_no_scripts(shared):
    plain = shared.job_queue.run(lambda: processing.process_images(make_p()))
    p = with_soft_inpainting(make_p(), False)
    off = shared.job_queue.run(lambda: scripts.process_with_scripts(p))
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(off.images[0]))
    assert "Soft inpainting" not in off.infotexts[0] and p.mask_round is True


def test_on_keeps_far_pixels_and_makes_a_smooth_transition(shared):
    p = with_soft_inpainting(make_p(), True)
    processed = shared.job_queue.run(lambda: scripts.process_with_scripts(p))
    out, src = np.asarray(processed.images[0]).astype(int), np.asarray(init_image()).astype(int)
    far = far_from_box()
    assert np.array_equal(out[far], src[far])
    assert np.abs(out[~far] - src[~far]).max() > 0  # something was repainted
    info = processed.infotexts[0]
    assert ("Soft inpainting enabled: True, Soft inpainting schedule bias: 1.0, Soft inpainting preservation "
            "strength: 0.5, Soft inpainting transition contrast boost: 4.0, Soft inpainting mask influence: 0.0, "
            "Soft inpainting difference threshold: 0.5, Soft inpainting difference contrast: 2.0") in info
    assert p.mask_round is False
    assert bool(((p.nmask > 0) & (p.nmask < 1)).any())  # mask rounding off: the latent mask is a gradient
    mask = np.asarray(p.soft_inpainting_overlays[0][0]).astype(int)
    assert mask[far].max() == 0
    # smooth: no neighbour-to-neighbour jump close to a hard edge, and grey levels in between
    assert max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max()) < 128
    assert len(np.unique(mask)) > 8
    assert np.array_equal(out[mask == 0], src[mask == 0])  # where the soft mask is 0 the original shows


def test_on_with_only_masked_keeps_far_pixels(shared):
    p = with_soft_inpainting(make_p(inpaint_full_res=True, inpaint_full_res_padding=8), True)
    processed = shared.job_queue.run(lambda: scripts.process_with_scripts(p))
    out, src = np.asarray(processed.images[0]), np.asarray(init_image())
    far = far_from_box()
    assert np.array_equal(out[far], src[far])
    assert "Soft inpainting enabled: True" in processed.infotexts[0]


def test_step_weight_and_latent_blend_match_a_reference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    nmask = torch.rand(1, 1, 3, 3, generator=g)
    nmask[0, 0, 0, 0], nmask[0, 0, 2, 2] = 0.0, 1.0
    settings = soft.Settings(mask_blend_power=1.5, mask_blend_scale=0.5)
    sigma = torch.tensor([2.0, 0.5])
    w = soft.step_weight(nmask, sigma, settings)
    expected_w = np.stack([nmask.numpy()[0] ** (s ** 1.5 * 0.5) for s in (2.0, 0.5)])
    assert np.allclose(w.numpy(), expected_w, atol=1e-6)
    out = soft.latent_blend(a, b, w, 4.0).numpy()
    an, bn, wn = a.numpy(), b.numpy(), w.numpy()
    for i in range(2):
        for y in range(3):
            for x in range(3):
                t = wn[i, 0, y, x]
                mixed = an[i, :, y, x] * (1 - t) + bn[i, :, y, x] * t
                if 0 < t < 1:
                    length = ((1 - t) * np.linalg.norm(an[i, :, y, x]) ** 4 + t * np.linalg.norm(bn[i, :, y, x]) ** 4) ** 0.25
                    mixed = mixed / np.linalg.norm(mixed) * length
                assert np.allclose(out[i, :, y, x], mixed, atol=1e-5)
    assert np.array_equal(out[:, :, 0, 0], an[:, :, 0, 0]) and np.array_equal(out[:, :, 2, 2], bn[:, :, 2, 2])


class Recorder(scripts.Script):
    """Records every mask hook and changes what post_sample and after-composite hand back."""

    def __init__(self):
        self.blends, self.overlays = [], []

    def title(self):
        return "recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def on_mask_blend(self, p, mba, *args):
        expected = mba.current_latent * mba.nmask + mba.init_latent * mba.mask
        assert torch.equal(mba.blended_latent, expected)
        self.blends.append((mba.is_final_blend, mba.sigma is None, mba.denoiser is None))

    def post_sample(self, p, ps, *args):
        ps.samples = ps.samples * 0  # a flat grey picture after decoding

    def postprocess_maskoverlay(self, p, ppmo, *args):
        self.overlays.append((ppmo.index, ppmo.mask_for_overlay.size, ppmo.overlay_image.size))

    def postprocess_image_after_composite(self, p, pp, *args):
        pp.image = pp.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def test_generic_mask_hooks_run_in_order(shared):
    runner = scripts.ScriptRunner()
    recorder = Recorder()
    recorder.args_from = recorder.args_to = 0
    recorder.alwayson = True
    recorder.filename = __file__
    runner.scripts, runner.alwayson_scripts = [recorder], [recorder]
    p = make_p(steps=4, denoising_strength=1.0, batch_size=2, mask_blur=0)
    p.scripts, p.script_args = runner, []
    processed = shared.job_queue.run(lambda: scripts.process_with_scripts(p))
    steps = len(recorder.blends) - 1
    assert steps == 4 and recorder.blends[:steps] == [(False, False, False)] * steps  # t_enc + 1 = 4 evaluations
    assert recorder.blends[-1] == (True, True, True)
    assert recorder.overlays == [(0, (64, 64), (64, 64)), (1, (64, 64), (64, 64))]
    # after composite the image was mirrored: the untouched outside is the mirrored init image
    out, src = np.asarray(processed.images[1]), np.asarray(init_image())[:, ::-1]
    outside = np.asarray(box_mask())[:, ::-1] == 0
    assert np.array_equal(out[outside], src[outside])


def test_built_in_the_inpaint_section_before_the_other_scripts(shared):
    """ui.md §3.6: the accordion sits right after the inpaint controls, not with the other scripts."""
    import gradio as gr
    runner = scripts.ScriptRunner()
    runner.initialize_scripts(is_img2img=True)

    def descendants(block):
        for child in getattr(block, "children", []):
            yield child
            yield from descendants(child)
    with gr.Blocks():
        with gr.Column() as inpaint_area:
            runner.setup_ui_for_section("inpaint")
        with gr.Column() as scripts_area:
            runner.setup_ui()
    soft_script = runner.script("soft inpainting")
    in_inpaint = {id(b) for b in descendants(inpaint_area)}
    in_scripts = {id(b) for b in descendants(scripts_area)}
    assert all(id(c) in in_inpaint for c in soft_script.controls)
    others = [s for s in runner.alwayson_scripts if s is not soft_script and s.controls]
    assert others and all(id(c) in in_scripts for s in others for c in s.controls)
    # every control is still one input of the job, at the script's own argument positions
    assert runner.inputs[soft_script.args_from:soft_script.args_to] == soft_script.controls
    assert runner.inputs[0] is runner.dropdown
