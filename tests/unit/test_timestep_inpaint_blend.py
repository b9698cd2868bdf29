"""Inpainting with timestep samplers (generation.md §7.4 step 6): the kept area is blended into the
model's input before every call (A1111's CompVis-style samplers: the UNet sees z0 itself there);
k-diffusion samplers blend the prediction after the call instead."""
import pytest
import torch

from tests.unit.test_img2img import box_mask, init_image, run, use


def _record_unet_inputs(shared, family="sd1"):
    model = use(shared, family)
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen, handle


@pytest.mark.parametrize("sampler", ["DDIM", "PLMS", "UniPC"])
def test_timestep_samplers_feed_the_unet_z0_in_the_kept_area(webui_session, sampler):
    shared = webui_session
    seen, handle = _record_unet_inputs(shared)
    try:
        _, p = run(shared, init_images=[init_image(seed=9)], mask=box_mask(), mask_blur=0, inpainting_fill=1,
                   steps=4, sampler_name=sampler)
    finally:
        handle.remove()
    keep = p.mask[0].expand_as(p.init_latent[0]).bool()
    z0 = p.init_latent[0][keep]
    assert seen
    for model_input in seen:  # rows: prompt and negative, both blended
        for row in model_input:
            assert torch.allclose(row[keep], z0, atol=1e-5, rtol=0)
            assert not torch.allclose(row[~keep], p.init_latent[0][~keep], atol=1e-2)  # the masked area is noisy


def test_k_diffusion_sampler_blends_after_the_call(webui_session):
    shared = webui_session
    seen, handle = _record_unet_inputs(shared)
    try:
        _, p = run(shared, init_images=[init_image(seed=9)], mask=box_mask(), mask_blur=0, inpainting_fill=1,
                   steps=3, sampler_name="Euler")
    finally:
        handle.remove()
    keep = p.mask[0].expand_as(p.init_latent[0]).bool()
    first = seen[0][0]
    # Euler's first input is (z0 + σ·noise)·c_in everywhere: not z0 in the kept area
    assert not torch.allclose(first[keep], p.init_latent[0][keep], atol=1e-2)
