"""Tiny models behave like real ones (issue 14 part 4): their norms have spread weights and biases,
so encoder outputs have a mean away from 0, prompts with attention weights give finite images on
every family, and the "Original" emphasis is A1111's formula wherever the mean is meaningful."""
import numpy as np
import pytest
import torch

from modules import conditioning, processing, sd_models
from modules.tiny_models import build_tiny_models
from tests.conftest import FAMILIES


def test_norms_are_not_the_fresh_ones_and_outputs_stay_in_range():
    built = build_tiny_models("sd1")
    norms = [m for model in (built["unet"], built["vae"], *built["text_encoders"]) for m in model.modules()
             if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and m.weight is not None]
    assert norms and all(not torch.all(m.weight == 1) and not torch.all(m.bias == 0) for m in norms)
    encoder = built["text_encoders"][0]
    hidden = encoder(torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])).last_hidden_state
    assert torch.isfinite(hidden).all() and hidden.abs().max() < 20
    # the mean "Original" restores is well above rounding noise, as with real encoders
    assert hidden.mean().abs() > 100 * conditioning.MEAN_NOISE_FLOOR * hidden.abs().mean()
    # deterministic in the seed
    again = build_tiny_models("sd1")["text_encoders"][0]
    assert torch.equal(again.final_layer_norm.bias, encoder.final_layer_norm.bias)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_weighted_prompt_gives_a_finite_image_on_every_family(webui_session, family):
    shared = webui_session
    info = sd_models.find_checkpoint(f"tiny-{family}")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt="a (red:1.2) cat", negative_prompt="[blurry:0.5]", steps=3, width=64, height=64, seed=7,
        sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    with shared.opts.override({"emphasis": "Original"}):
        processed = shared.job_queue.run(lambda: processing.process_images(p))
    image = np.asarray(processed.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0  # NaN latents would have been an error


def test_original_emphasis_is_a1111s_formula_where_the_mean_is_meaningful():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2, 77, 8, generator=generator) + 0.05  # a mean like a real encoder's
    w = torch.ones(2, 77)
    w[0, 3], w[1, 9] = 1.2, 0.8
    weighted = z * w[..., None]
    expected = weighted * (z.mean() / weighted.mean())
    assert torch.allclose(conditioning.apply_emphasis(z, w, "Original"), expected)


def test_original_emphasis_leaves_the_scale_alone_where_the_mean_is_rounding_noise():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(1, 77, 8, generator=generator)
    z = z - z.mean(dim=-1, keepdim=True)  # a bias-free layer norm: every token has mean 0
    w = torch.ones(1, 77)
    w[0, 3] = 1.2
    out = conditioning.apply_emphasis(z, w, "Original")
    assert torch.isfinite(out).all()
    assert torch.allclose(out, z * w[..., None])  # the weights, not a ratio of two rounding errors
