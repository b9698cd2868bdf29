"""Hires fix, refiner and NGMS end to end on tiny checkpoints."""
import numpy as np
import pytest
import torch

from modules import hires, processing, sd_models


def use(shared, family):
    info = sd_models.find_checkpoint(f"tiny-{family}")
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


def run(shared, **kwargs):
    fields = dict(prompt="a castle", negative_prompt="", steps=3, width=64, height=64, seed=7,
                  cfg_scale=7.0, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    return shared.job_queue.run(lambda: processing.process_images(p))


@pytest.mark.parametrize("size,scale,resize,expected", [
    ((512, 512), 2.0, (0, 0), (1024, 1024, 0, 0, {"Hires upscale": 2.0})),
    ((512, 768), 1.5, (0, 0), (768, 1152, 0, 0, {"Hires upscale": 1.5})),
    ((512, 768), 2.0, (1024, 0), (1024, 1536, 0, 0, {"Hires resize": "1024x0"})),
    ((512, 768), 2.0, (0, 1024), (682, 1024, 0, 0, {"Hires resize": "0x1024"})),
    # both set: cover, then crop whole latent rows/columns
    ((512, 512), 2.0, (1024, 768), (1024, 1024, 0, 32, {"Hires resize": "1024x768"})),
    ((512, 768), 2.0, (1024, 1024), (1024, 1536, 0, 64, {"Hires resize": "1024x1024"})),
])
def test_hires_target(size, scale, resize, expected):
    t = hires.hires_target(*size, scale, *resize)
    assert (t.width, t.height, t.truncate_x, t.truncate_y, t.infotext) == expected


def test_truncate_cuts_half_from_each_side():
    latent = torch.arange(10.0).reshape(1, 1, 1, 10).expand(1, 1, 2, 10)
    target = hires.HiresTarget(80, 16, 3, 0, {})
    assert hires.truncate(latent, target)[0, 0, 0].tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_unknown_upscaler_lists_valid_names():
    with pytest.raises(hires.UnknownUpscaler, match="Latent \\(bicubic\\).*Lanczos"):
        hires.check_upscaler("4x-NoSuchModel")
    # a known model upscaler without its weights says which file goes where
    with pytest.raises(hires.UpscalerUnavailable, match="needs RealESRGAN_x4plus.pth in .*RealESRGAN"):
        hires.check_upscaler("R-ESRGAN 4x+")


def test_hires_fix_latent_and_lanczos(webui_session):
    shared = webui_session
    use(shared, "sd1")
    shapes = []
    handle = shared.model_holder.sd_model.unet.register_forward_pre_hook(
        lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    try:
        processed = run(shared, enable_hr=True, hr_scale=2.0, hr_second_pass_steps=2)
    finally:
        handle.remove()
    assert processed.images[0].size == (128, 128)
    assert shapes == [(8, 8)] * 3 + [(16, 16)] * 2  # 3 first-pass steps, then exactly 2 hires steps
    text = processed.infotexts[0]
    assert "Size: 64x64" in text and "Denoising strength: 0.7" in text
    assert text.endswith("Hires upscale: 2.0, Hires steps: 2, Hires upscaler: Latent, Version: v1.10.1-sdwebui-0.1.0")
    lanczos = run(shared, enable_hr=True, hr_upscaler="Lanczos", hr_resize_x=96, hr_resize_y=64,
                  denoising_strength=0.5, hr_sampler_name="Euler a", hr_prompt="a castle at night")
    assert lanczos.images[0].size == (96, 64)
    text = lanczos.infotexts[0]
    assert 'Hires sampler: Euler a, Hires prompt: a castle at night, Hires resize: 96x64' in text
    assert "Denoising strength: 0.5" in text


def test_hires_with_zero_strength_is_a_plain_upscale(webui_session):
    shared = webui_session
    use(shared, "sd1")
    plain = run(shared, enable_hr=True, denoising_strength=0.0, hr_upscaler="Latent (nearest)")
    first = run(shared)
    first_latent_scaled = np.asarray(plain.images[0])
    assert plain.images[0].size == (128, 128) and first_latent_scaled.std() > 0
    assert first.images[0].size == (64, 64)


def test_refiner_takes_over_and_main_model_returns(webui_session):
    shared = webui_session
    use(shared, "sd1")
    base = run(shared, steps=6)
    refined = run(shared, steps=6, refiner_checkpoint="tiny-sd2-v", refiner_switch_at=0.5)
    refiner = sd_models.find_checkpoint("tiny-sd2-v")
    assert f"Refiner: {refiner.short_title}, Refiner switch at: 0.5" in refined.infotexts[0]
    assert not np.array_equal(np.asarray(base.images[0]), np.asarray(refined.images[0]))
    assert shared.model_holder.sd_model.sd_checkpoint_info.name_for_extra == "tiny-sd1"


def test_sdxl_refiner_with_aesthetic_score(webui_session):
    shared = webui_session
    use(shared, "sdxl")
    refined = run(shared, steps=4, refiner_checkpoint="tiny-sdxl-refiner", refiner_switch_at=0.6)
    assert "Refiner switch at: 0.6" in refined.infotexts[0]
    assert np.asarray(refined.images[0]).std() > 0
    assert shared.model_holder.sd_model.family == "sdxl"


def test_ngms_skips_the_negative_pass(webui_session):
    shared = webui_session
    use(shared, "sd1")
    rows = []
    handle = shared.model_holder.sd_model.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        processed = run(shared, steps=4, s_min_uncond=100.0)  # every sigma is below 100
    finally:
        handle.remove()
    assert rows == [1, 2, 1, 2]  # every second evaluation runs without the negative prompt
    assert "NGMS: 100.0" in processed.infotexts[0]


def test_hires_checkpoint_is_used_for_the_second_pass_only(webui_session):
    shared = webui_session
    use(shared, "sd1")
    processed = run(shared, enable_hr=True, hr_checkpoint_name="tiny-sd2-v", hr_second_pass_steps=1)
    hr = sd_models.find_checkpoint("tiny-sd2-v")
    assert f"Hires checkpoint: {hr.short_title}" in processed.infotexts[0]
    assert "Model: tiny-sd1" in processed.infotexts[0]
    assert shared.model_holder.sd_model.sd_checkpoint_info.name_for_extra == "tiny-sd1"


def test_inpainting_model_hires_sees_the_upscaled_image_below_full_mask_weight(webui_session):
    from modules.sampling_pass import inpainting_image_cond, masked_image_cond
    shared = webui_session
    model = use(shared, "sd1-inpaint")
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, 4:].clone()))
    try:
        full = run(shared, enable_hr=True, hr_scale=2.0, hr_second_pass_steps=1, steps=2)
        hires_default = seen[-1]
        seen.clear()
        half = run(shared, enable_hr=True, hr_scale=2.0, hr_second_pass_steps=1, steps=2,
                   override_settings={"inpainting_mask_weight": 0.5})
        hires_half = seen[-1]
    finally:
        handle.remove()
    dummy = inpainting_image_cond(model, 1, 128, 128)
    # weight 1 (default): the grey txt2img dummy, and no infotext key
    assert torch.allclose(hires_default[:1], dummy, atol=1e-6)
    assert "Conditional mask weight" not in full.infotexts[0]
    # weight 0.5: mask of ones, then the encoding of the half-masked upscaled image
    assert torch.equal(hires_half[:, :1], torch.ones_like(hires_half[:, :1]))
    assert not torch.allclose(hires_half[:1], dummy, atol=1e-3)
    assert "Conditional mask weight: 0.5" in half.infotexts[0]
    # at weight 1 the masked-image conditioning of any image is the dummy
    image = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.allclose(masked_image_cond(model, image, 1.0), dummy, atol=1e-6)
