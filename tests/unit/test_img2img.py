"""img2img and inpainting in-process on tiny checkpoints: against a hand-driven loop, masks that
keep every outside pixel, and the inpainting UNet's input."""
import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, sd_models
from modules.models.loader import load_checkpoint
from tests.unit.test_txt2img import NEGATIVE, PROMPT, _hand_sigmas, _hand_t


def use(shared, family):
    info = sd_models.find_checkpoint(f"tiny-{family}")
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


def init_image(size=(64, 64), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def box_mask(size=(64, 64), box=(16, 20, 40, 48)):
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def run(shared, **kwargs):
    fields = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=6, width=64, height=64, seed=1234,
                  cfg_scale=7.0, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True,
                  init_images=[init_image()], denoising_strength=0.75)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingImg2Img(**fields)
    return shared.job_queue.run(lambda: processing.process_images(p)), p


@torch.no_grad()
def test_img2img_equals_hand_driven_loop(webui_session, data_dir):
    shared = webui_session
    steps, seed, cfg, strength = 10, 4321, 6.5, 0.75
    model = use(shared, "sd1")
    image = init_image(seed=3)
    processed, p = run(shared, steps=steps, seed=seed, cfg_scale=cfg, denoising_strength=strength,
                       init_images=[image])

    m = load_checkpoint(str(data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"))
    tok, enc = m.tokenizers[0], m.text_encoders[0]

    def embed(text):
        ids = tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return enc(ids)[0]

    cond, uncond = embed(PROMPT), embed(NEGATIVE)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    dist = m.vae.encode(pixels).latent_dist
    eps = torch.randn(dist.mean.shape, generator=torch.Generator("cpu").manual_seed(seed))
    z0 = (dist.mean + dist.std * eps) * m.vae_scaling_factor
    t_enc = int(strength * steps)
    sigmas = _hand_sigmas(m.alphas_cumprod, steps)[steps - t_enc - 1:]
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(seed))
    x = z0 + noise * sigmas[0]
    for i in range(len(sigmas) - 1):
        sigma = float(sigmas[i])
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        t = _hand_t(m.alphas_cumprod, sigma)
        den_c = x - m.unet(x * c_in, t, encoder_hidden_states=cond).sample * sigma
        den_u = x - m.unet(x * c_in, t, encoder_hidden_states=uncond).sample * sigma
        denoised = den_u + (den_c - den_u) * cfg
        x = x + (x - denoised) / sigma * (float(sigmas[i + 1]) - sigma)

    latents = shared.job_queue.run(lambda: p.sample(model, [PROMPT], [NEGATIVE], [seed], [0]))
    assert torch.allclose(latents, x, atol=1e-4, rtol=0)
    expected = ((m.vae.decode(x / m.vae_scaling_factor).sample + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0) * 255
    assert np.abs(np.asarray(processed.images[0], dtype=np.float64) - expected.numpy()).max() <= 0.5 + 0.03
    assert "Denoising strength: 0.75" in processed.infotexts[0]
    assert "Mask blur" not in processed.infotexts[0]


def test_fix_steps_runs_exactly_steps(webui_session):
    shared = webui_session
    use(shared, "sd1")
    seen = []
    shared.opts.set("img2img_fix_steps", True, run_callbacks=False)
    try:
        from modules import sampling_pass
        original = sampling_pass.pass_sigmas

        def spy(*args):
            sigmas = original(*args)
            seen.append(len(sigmas) - 1)
            return sigmas
        sampling_pass.pass_sigmas = spy
        try:
            run(shared, steps=5, denoising_strength=0.5)
        finally:
            sampling_pass.pass_sigmas = original
    finally:
        shared.opts.set("img2img_fix_steps", False, run_callbacks=False)
    assert seen == [5]


@pytest.mark.parametrize("full_res", [False, True])
@pytest.mark.parametrize("invert", [0, 1])
def test_pixels_outside_the_mask_are_the_init_image(webui_session, full_res, invert):
    shared = webui_session
    use(shared, "sd1")
    image, mask = init_image(seed=5), box_mask()
    processed, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, inpainting_mask_invert=invert,
                       inpaint_full_res=full_res, inpaint_full_res_padding=4, inpainting_fill=1, steps=3)
    out, src = np.asarray(processed.images[0]), np.asarray(image)
    outside = np.asarray(mask) == (255 if invert else 0)
    assert np.array_equal(out[outside], src[outside])
    assert not np.array_equal(out[~outside], src[~outside])  # the masked area was repainted
    info = processed.infotexts[0]
    assert ("Mask mode: Inpaint not masked" in info) == bool(invert)
    assert ("Inpaint area: Only masked, Masked area padding: 4" in info) == full_res


@pytest.mark.parametrize("fill, name", [(0, "fill"), (2, "latent noise"), (3, "latent nothing")])
def test_masked_content_modes(webui_session, fill, name):
    shared = webui_session
    use(shared, "sd1")
    image, mask = init_image(seed=6), box_mask()
    processed, p = run(shared, init_images=[image], mask=mask, mask_blur=0, inpaint_full_res=False,
                       inpainting_fill=fill, steps=3)
    assert f"Masked content: {name}" in processed.infotexts[0]
    inside = (p.nmask[0, 0] > 0.5)
    if fill == 3:
        assert torch.all(p.init_latent[0][:, inside] == 0)
    out, src = np.asarray(processed.images[0]), np.asarray(image)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], src[outside])


@torch.no_grad()
def test_inpainting_model_unet_sees_mask_and_masked_image(webui_session):
    shared = webui_session
    model = use(shared, "sd1-inpaint")
    image, mask = init_image(seed=7), box_mask()
    inputs = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    try:
        processed, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, inpaint_full_res=False,
                           inpainting_fill=1, steps=2)
    finally:
        hook.remove()
    assert inputs and inputs[0].shape[1] == 9
    # independently: m = the mask at pixel size, x_masked = x·(1 − m), encoded (mode), mask resized
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255)[None, None]
    latent = model.vae.encode(pixels * (1 - m)).latent_dist.mode() * model.vae_scaling_factor
    small = m[:, :, ::8, ::8]  # nearest resize of a 64x64 mask to 8x8
    expected = torch.cat([small, latent], dim=1)[0]
    for row in inputs[0]:  # prompt and negative rows get the same conditioning
        assert torch.allclose(row[4:], expected, atol=1e-5)
    assert "Conditional mask weight: 1.0" in processed.infotexts[0]


def test_resize_modes_keep_output_size_and_latent_upscale_runs(webui_session):
    shared = webui_session
    use(shared, "sd1")
    wide = init_image(size=(96, 48), seed=8)
    for mode in range(4):
        processed, _ = run(shared, init_images=[wide], resize_mode=mode, steps=2, width=64, height=64)
        assert processed.images[0].size == (64, 64)


def test_batch_of_init_images_and_bad_count(webui_session):
    shared = webui_session
    use(shared, "sd1")
    processed, p = run(shared, init_images=[init_image(seed=1), init_image(seed=2)], batch_size=4, steps=2)
    assert p.batch_size == 2 and len(processed.images) == 2  # no grid: do_not_save_grid
    assert not np.array_equal(np.asarray(processed.images[0]), np.asarray(processed.images[1]))
    with pytest.raises(processing.GenerationError, match="bad number of images"):
        run(shared, init_images=[init_image(seed=1)] * 3, batch_size=2, steps=2)
    with pytest.raises(processing.GenerationError, match="mask: its size"):
        run(shared, mask=box_mask(size=(32, 32)), steps=2)


def test_color_correction_runs(webui_session):
    shared = webui_session
    use(shared, "sd1")
    shared.opts.set("img2img_color_correction", True, run_callbacks=False)
    try:
        processed, _ = run(shared, steps=2)
    finally:
        shared.opts.set("img2img_color_correction", False, run_callbacks=False)
    assert processed.images[0].size == (64, 64)


@torch.no_grad()
def test_pix2pix_model_sees_the_image_and_image_cfg_combines_three_passes(webui_session):
    shared = webui_session
    model = use(shared, "sd1-pix2pix")
    assert model.is_pix2pix and model.unet.config.in_channels == 8
    image = init_image(seed=9)
    inputs = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    try:
        processed, _ = run(shared, init_images=[image], image_cfg_scale=1.5, steps=2)
    finally:
        hook.remove()
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    expected = model.vae.encode(pixels).latent_dist.mode()[0]  # the mean, not scaled
    # per step: prompt and negative with the image in one batch, then the negative without it
    assert inputs[0].shape[:2] == (2, 8) and inputs[1].shape[:2] == (1, 8)
    for row in inputs[0]:
        assert torch.allclose(row[4:], expected, atol=1e-5)
    assert torch.all(inputs[1][0, 4:] == 0)
    assert "CFG scale: 7.0, Image CFG scale: 1.5, Seed:" in processed.infotexts[0]


def test_sdxl_inpainting_model_keeps_outside_pixels(webui_session):
    shared = webui_session
    model = use(shared, "sdxl-inpaint")
    assert model.is_sdxl and model.is_inpainting
    image, mask = init_image(seed=10), box_mask()
    processed, p = run(shared, init_images=[image], mask=mask, mask_blur=0, inpaint_full_res=False,
                       inpainting_fill=1, steps=2)
    out, src = np.asarray(processed.images[0]), np.asarray(image)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], src[outside])
    assert p.image_conditioning.shape == (1, 5, 8, 8)


def test_save_init_img_writes_the_init_image_under_its_md5(webui_session, data_dir):
    import hashlib
    shared = webui_session
    use(shared, "sd1")
    image = init_image(seed=12)
    shared.opts.set("save_init_img", True, run_callbacks=False)
    try:
        processed, _ = run(shared, init_images=[image], steps=2, do_not_save_samples=False)
    finally:
        shared.opts.set("save_init_img", False, run_callbacks=False)
    digest = hashlib.md5(image.tobytes()).hexdigest()
    assert (data_dir / "outputs" / "init-images" / f"{digest}.png").is_file()
    assert f"Init image hash: {digest}" in processed.infotexts[0]
    day_folders = list((data_dir / "outputs" / "img2img-images").iterdir())
    assert day_folders and any(day_folders[0].glob("*.png"))
