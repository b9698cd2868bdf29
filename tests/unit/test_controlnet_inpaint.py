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
