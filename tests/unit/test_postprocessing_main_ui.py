"""postprocessing_enable_in_main_ui (extras.md §4.6): chosen Extras steps run on every image of a
txt2img/img2img job, after the image is finished, and their keys join the generation infotext."""
import numpy as np
import pytest
from PIL import Image

from modules import processing, scripts, sd_models
from modules.job_errors import GenerationError

SMALL = dict(prompt="a lighthouse", negative_prompt="", steps=2, width=64, height=64, seed=11, cfg_scale=5.0,
             sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)


@pytest.fixture(scope="module")
def with_steps(webui_session):
    """Scripts reloaded with Upscale and GFPGAN enabled in the main UI; restored afterwards."""
    shared = webui_session
    from modules.extension_loading import startup
    old = shared.opts.postprocessing_enable_in_main_ui
    shared.opts.set("postprocessing_enable_in_main_ui", ["Upscale", "GFPGAN"], run_callbacks=False)
    try:
        startup.load_extensions()
        startup.setup_scripts_without_ui()
        info = sd_models.find_checkpoint("tiny-sd1")
        shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
        yield shared
    finally:
        shared.opts.set("postprocessing_enable_in_main_ui", old, run_callbacks=False)
        startup.load_extensions()
        startup.setup_scripts_without_ui()


def run(shared, make, upscale=None, **fields):
    """A job through the txt2img/img2img script runner; upscale: Upscale step control values."""
    is_img2img = make is processing.StableDiffusionProcessingImg2Img
    runner = scripts.scripts_img2img if is_img2img else scripts.scripts_txt2img
    p = make(**{**SMALL, **fields})
    args = runner.default_args()
    if upscale:
        step = runner.script("upscale")
        names = step.control_names
        values = list(args[step.args_from:step.args_to])
        for name, value in upscale.items():
            values[names.index(name)] = value
        args[step.args_from:step.args_to] = values
    p.scripts, p.script_args = runner, args
    return shared.job_queue.run(lambda: scripts.process_with_scripts(p))


def test_steps_are_always_on_sections_of_both_tabs(with_steps):
    for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
        titles = [s.name for s in runner.alwayson_scripts]
        assert titles.index("upscale") < titles.index("gfpgan")  # the Extras order (rank)
        assert "codeformer" not in titles
        step = runner.script("upscale")
        assert step.control_names[:1] == ["upscale_enabled"] and "upscaler_1_name" in step.control_names


def test_default_controls_change_nothing(with_steps):
    plain = run(with_steps, processing.StableDiffusionProcessingTxt2Img)
    assert plain.images[0].size == (64, 64)
    assert "Postprocess" not in plain.infotexts[0] and "GFPGAN visibility" not in plain.infotexts[0]


def test_upscale_step_runs_on_each_image_with_its_infotext(with_steps):
    plain = run(with_steps, processing.StableDiffusionProcessingTxt2Img, batch_size=2)
    upscaled = run(with_steps, processing.StableDiffusionProcessingTxt2Img, batch_size=2,
                   upscale={"upscaler_1_name": "Lanczos", "upscale_by": 2})
    for before, after, text in zip(plain.images, upscaled.images, upscaled.infotexts):
        assert after.size == (128, 128)
        # the reference: PIL's own Lanczos resize of the same generated image
        expected = np.asarray(before.resize((128, 128), Image.Resampling.LANCZOS), dtype=int)
        assert np.abs(np.asarray(after, dtype=int) - expected).max() <= 1
        assert "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" in text


def test_img2img_upscales_after_the_inpaint_overlay(with_steps):
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = run(with_steps, processing.StableDiffusionProcessingImg2Img, init_images=[init], mask=mask,
              denoising_strength=0.6, upscale={"upscaler_1_name": "Nearest", "upscale_by": 2})
    image = out.images[0]
    assert image.size == (128, 128)
    # outside the mask the overlay kept the init pixels; Nearest doubles them unchanged
    assert image.getpixel((2, 2)) == (200, 40, 40)
    assert "Postprocess upscaler: Nearest" in out.infotexts[0]


def test_a_missing_upscaler_fails_the_job_before_sampling(with_steps, monkeypatch):
    def sampled(*args, **kwargs):
        raise AssertionError("the job sampled before it checked the upscaler")
    monkeypatch.setattr(processing, "decode_latents", sampled)
    with pytest.raises(GenerationError, match=r"Upscale \(postprocessing in txt2img\).*R-ESRGAN 4x\+"):
        run(with_steps, processing.StableDiffusionProcessingTxt2Img, upscale={"upscaler_1_name": "R-ESRGAN 4x+"})
    with pytest.raises(GenerationError, match="valid names"):
        run(with_steps, processing.StableDiffusionProcessingTxt2Img, upscale={"upscaler_1_name": "No such"})
