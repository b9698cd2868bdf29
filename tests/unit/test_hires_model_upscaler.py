"""Hires fix through the upscaler registry: a model upscaler from models/ESRGAN (extras.md §2)."""
import os

from modules import hires, processing, sd_models
from modules.upscaling import core, tiny_upscalers


def test_hires_fix_runs_a_model_upscaler(webui_session, monkeypatch):
    shared = webui_session
    path = tiny_upscalers.write("esrgan", os.path.join(shared.paths.models, "ESRGAN", "2x-Tiny.pth"), scale=2)
    seen = []
    real = core.run_model

    def spy(descriptor, image, tile, overlap):
        out = real(descriptor, image, tile, overlap)
        seen.append((image.copy(), out))
        return out
    monkeypatch.setattr(core, "run_model", spy)
    try:
        assert "2x-Tiny" in hires.upscaler_choices() and hires.upscaler_choices()[:6] == list(hires.LATENT_UPSCALE_MODES)
        info = sd_models.find_checkpoint("tiny-sd1")
        shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a castle", steps=2, width=64, height=64, seed=3, sampler_name="Euler", enable_hr=True,
            hr_upscaler="2x-Tiny", hr_resize_x=120, hr_resize_y=96, denoising_strength=0.5,
            do_not_save_samples=True, do_not_save_grid=True)
        processed = shared.job_queue.run(lambda: processing.process_images(p))
    finally:
        os.remove(path)
    assert processed.images[0].size == (120, 96)
    assert "Hires upscaler: 2x-Tiny" in processed.infotexts[0]
    # one model pass on the 64x64 first pass; its output equals the model's own upscale of that image
    assert len(seen) == 1 and seen[0][0].size == (64, 64) and seen[0][1].size == (128, 128)
