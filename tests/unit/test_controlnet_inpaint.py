"""ControlNet `inpaint_only` (controlnet.md §3.8): the per-step restoration of the hint outside the
mask, checked against the spec's ε formulation written out here, the pixel blend mask against a plain
NumPy dilation and box blur, and one tiny txt2img job whose pixels outside the grown mask are the hint's."""
import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, sd_models
from modules.controlnet import inpaint_only, units
from modules.controlnet.residuals import ControlHook, PreparedUnit
from tests.controlnet_models import write_tiny_controlnets


def reference_max_pool(mask: np.ndarray) -> np.ndarray:
    """10×10 windows every 8 pixels, the window starting one pixel before (padding 1)."""
    h, w = mask.shape
    out = np.zeros((h // 8, w // 8), dtype=mask.dtype)
    for i in range(h // 8):
        for j in range(w // 8):
            rows = slice(max(0, 8 * i - 1), min(h, 8 * i + 9))
            cols = slice(max(0, 8 * j - 1), min(w, 8 * j + 9))
            out[i, j] = mask[rows, cols].max()
    return out


def test_latent_mask_is_the_pixel_mask_max_pooled():
    mask = np.zeros((32, 48), dtype=np.float32)
    mask[9:10, 17:18] = 1.0   # one pixel: reaches the latent cells whose 10-pixel window covers it
    mask[31, 0] = 0.5
    got = inpaint_only.latent_mask(torch.from_numpy(mask)[None, None])[0, 0].numpy()
    expected = reference_max_pool(mask)
    assert got.shape == (4, 6)
    assert np.array_equal(got, expected)
    assert expected[1, 2] == 1 and expected[0, 2] == 0 and expected[1, 1] == 0  # rows 7..16, cols 15..24
    assert expected[3, 0] == 0.5


@pytest.mark.parametrize("weight, w", [(0.3, 0.3), (1.7, 1.0), (0.0, 0.0)])
def test_restore_denoised_is_the_spec_eps_blend(weight, w):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 4, generator=g) * 3
    eps = torch.randn(2, 4, 4, 4, generator=g)
    z0 = torch.randn(1, 4, 4, 4, generator=g)
    mask = (torch.rand(1, 1, 4, 4, generator=g) > 0.5).float()
    sigma = torch.tensor([2.5, 2.5])[:, None, None, None]
    # the spec's steps: x̂₀ from ε, x₀′, ε′ from x₀′, ε blended with w = clamp(weight, 0, 1)
    x0_hat = x - sigma * eps
    x0_prime = x0_hat * mask + z0 * (1 - mask)
    eps_prime = (x - x0_prime) / sigma
    eps_new = eps_prime * w + eps * (1 - w)
    expected = x - sigma * eps_new
    got = inpaint_only.restore_denoised(x - sigma * eps, z0, mask, weight)
    assert torch.allclose(got, expected, atol=1e-5)
    if w == 1.0:  # full weight: outside the mask the prediction is exactly z0
        assert torch.equal(got * (1 - mask), (z0 * (1 - mask)).expand_as(got))


def test_blend_mask_is_dilated_then_box_blurred():
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[12:20, 14:18] = 255
    sigma = 7
    got = inpaint_only.blend_mask(mask, sigma)
    r = sigma // 2
    grown = np.zeros_like(mask)
    for i in range(32):
        for j in range(32):
            grown[i, j] = mask[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].max()
    expected = np.zeros((32, 32), dtype=np.float64)
    for i in range(32):
        for j in range(32):  # the mask stays away from the border: no padding rule needed
            expected[i, j] = grown[i - r:i + r + 1, j - r:j + r + 1].mean() / 255 if r <= i < 32 - r and \
                r <= j < 32 - r else 0.0
    assert np.allclose(got, expected, atol=1e-6)
    assert got[15, 15] == pytest.approx(1.0) and got[12 - 2 * r - 1, 15] == 0.0


def _target(z0, mask):
    return inpaint_only.InpaintOnlyTarget(z0=z0, latent_mask=mask, colour=torch.zeros(1, 3, 32, 32),
                                          blend_mask=torch.zeros(1, 1, 32, 32))


def test_hook_restores_only_while_the_unit_is_active():
    z0 = torch.ones(1, 4, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    unit = PreparedUnit(0, None, 0.5, 0.5, 1.0, "Balanced", "Both", {"first": None}, {"first": _target(z0, mask)})
    hook = ControlHook([unit], hires_enabled=False)
    hook.begin_pass(10, hires=False)
    denoised = torch.zeros(2, 4, 4, 4)
    assert torch.equal(hook.restore_denoised(denoised), denoised)  # step 0: before guidance_start 0.5
    hook.step_done(6)
    assert torch.equal(hook.restore_denoised(denoised), torch.full_like(denoised, 0.5))  # w·z0 + (1 − w)·0


# -- one tiny job --------------------------------------------------------------------------------

def test_txt2img_inpaint_only_keeps_the_hint_outside_the_grown_mask(webui_session, data_dir):
    shared = webui_session
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    info = sd_models.find_checkpoint("tiny-sd1")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    colour = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[24:40, 20:44] = 255

    def generate(module):
        unit = units.ControlNetUnit(enabled=True, module=module, model="tiny_sd15_canny",
                                    image=Image.fromarray(colour), mask=Image.fromarray(mask))
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a cat", steps=3, width=64, height=64, seed=5, cfg_scale=5.0, sampler_name="Euler",
            do_not_save_samples=True, do_not_save_grid=True, controlnet_units=[unit])
        processed = shared.job_queue.run(lambda: processing.process_images(p))
        return np.asarray(processed.images[0]), p

    out, p = generate("inpaint_only")
    assert shared.opts.control_net_inpaint_blur_sigma == 7
    target = p.controlnet_hook.units[0].inpaint_only["first"]
    assert tuple(target.z0.shape) == (1, 4, 8, 8) and tuple(target.latent_mask.shape) == (1, 1, 8, 8)
    kept = inpaint_only.blend_mask(mask, 7) == 0  # outside the mask grown by 3 + 3 pixels
    assert kept.sum() == 64 * 64 - (16 + 12) * (24 + 12)
    assert np.array_equal(out[kept], colour[kept])
    plain, _ = generate("inpaint")  # the same hint without the restoration: the masked part differs
    inside = inpaint_only.blend_mask(mask, 7) == 1
    assert inside.sum() == 16 * 24
    assert not np.array_equal(out[inside], plain[inside])
    assert not np.array_equal(plain[kept], colour[kept])


# -- "Only masked" img2img: the control image follows A1111's crop --------------------------------

def palette_image(h, w, seed=0) -> np.ndarray:
    """Five colours: resized with nearest neighbour (§3.4), so x2 and x4 are plain pixel repeats."""
    colours = np.array([[10, 20, 30], [200, 40, 90], [60, 220, 120], [250, 250, 5], [90, 90, 240]], dtype=np.uint8)
    return colours[np.random.default_rng(seed).integers(0, 5, (h, w))]


def repeat(x: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(x, k, axis=0), k, axis=1)


def test_only_masked_crop_sizes_and_placement():
    from modules.controlnet import hint as hints
    source = palette_image(32, 48)
    # to the mask's 96x64 (x2), cut x 24..72, y 16..48, then to 96x64 again (x2)
    got = hints.only_masked_crop(source, (96, 64), (24, 16, 72, 48), 96, 64, "Just Resize")
    assert np.array_equal(got, repeat(repeat(source, 2)[16:48, 24:72], 2))
    # a region of another aspect (clamped at the picture's edge) is letterboxed: Resize and Fill
    got = hints.only_masked_crop(source, (96, 64), (0, 0, 32, 16), 64, 64, "Just Resize")
    region = repeat(source, 2)[0:16, 0:32]
    assert np.array_equal(got[16:48], repeat(region, 2))  # pasted at floor((64 - 32) / 2)
    border = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    assert (got[:16] == np.median(border, axis=0).astype(np.uint8)).all()
    with pytest.raises(hints.HintError, match="outside the mask"):
        hints.only_masked_crop(source, (96, 64), (80, 0, 100, 10), 64, 64, "Just Resize")


def test_img2img_only_masked_crops_the_control_image(webui_session, data_dir):
    from modules.controlnet import hint as hints
    shared = webui_session
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    info = sd_models.find_checkpoint("tiny-sd1")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    init = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    mask = np.zeros((64, 96), dtype=np.uint8)
    mask[24:40, 40:56] = 255
    control = palette_image(32, 48, seed=2)

    def run(unit, padding=0):
        p = processing.StableDiffusionProcessingImg2Img(
            prompt="a cat", steps=2, width=64, height=64, seed=5, sampler_name="Euler", init_images=[init],
            mask=Image.fromarray(mask), mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=padding,
            denoising_strength=0.5, do_not_save_samples=True, do_not_save_grid=True, controlnet_units=[unit])
        shared.job_queue.run(lambda: processing.process_images(p))
        return p

    unit = units.ControlNetUnit(enabled=True, module="none", model="tiny_sd15_canny", resize_mode="Just Resize",
                                image=Image.fromarray(control))
    p = run(unit)
    assert p.paste_to == (40, 24, 16, 16)  # A1111's region: the mask's box, already square
    hint = p.controlnet_hook.units[0].hints["first"]
    expected = repeat(repeat(control, 2)[24:40, 40:56], 4)  # x2 to the mask, cut, x4 to 64x64
    assert torch.equal(hint, hints.to_tensor(expected))
    uncropped = run(units.ControlNetUnit(**{**unit.__dict__, "inpaint_crop_input_image": False}))
    assert torch.equal(uncropped.controlnet_hook.units[0].hints["first"],
                       hints.to_tensor(hints.fit(control, 64, 64, "Just Resize")))
    # an inpaint unit without an image takes the init image and A1111's mask, cropped alike: with
    # padding 8 the region is x 32..64, y 16..48 (x2 to 64x64), the mask's box in it 8..24 -> 16..48
    p = run(units.ControlNetUnit(enabled=True, module="inpaint", model="tiny_sd15_canny"), padding=8)
    assert p.paste_to == (32, 16, 32, 32)
    inpaint_hint = p.controlnet_hook.units[0].hints["first"][0]
    masked = torch.zeros(64, 64, dtype=torch.bool)
    masked[16:48, 16:48] = True
    assert (inpaint_hint[:, masked] == -1).all() and (inpaint_hint[:, ~masked] >= 0).all()


# -- a 9-channel inpainting base UNet: the ControlNet sees the 4 latent channels only (§3.6) ------

def test_controlnet_with_a_nine_channel_inpainting_checkpoint(webui_session, data_dir):
    shared = webui_session
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    info = sd_models.find_checkpoint("tiny-sd1-inpaint")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    assert shared.model_holder.sd_model.unet.config.in_channels == 9
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def generate(weight):
        control = [] if weight is None else [units.ControlNetUnit(
            enabled=True, module="none", model="tiny_sd15_canny", weight=weight, image=Image.fromarray(image))]
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a cat", steps=3, width=64, height=64, seed=9, cfg_scale=5.0, sampler_name="Euler",
            do_not_save_samples=True, do_not_save_grid=True, controlnet_units=control)
        return np.asarray(shared.job_queue.run(lambda: processing.process_images(p)).images[0])

    plain = generate(None)
    assert np.array_equal(generate(0.0), plain)
    assert not np.array_equal(generate(1.0), plain)
