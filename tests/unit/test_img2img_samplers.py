"""Every kind of sampler runs img2img with a mask and keeps the outside pixels."""
import numpy as np
import pytest

from tests.unit.test_img2img import box_mask, init_image, run, use


@pytest.mark.parametrize("sampler", ["DDIM", "UniPC", "DPM adaptive", "DPM++ 2M SDE", "LCM", "Heun"])
def test_masked_img2img_with_each_sampler_kind(webui_session, sampler):
    shared = webui_session
    use(shared, "sd1")
    image, mask = init_image(seed=11), box_mask()
    processed, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, inpaint_full_res=False,
                       inpainting_fill=1, steps=4, sampler_name=sampler)
    out, src = np.asarray(processed.images[0]), np.asarray(image)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], src[outside])
    assert np.isfinite(out.astype(float)).all()
