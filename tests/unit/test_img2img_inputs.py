"""Pure parts of img2img: resize modes, mask helpers, editor values, the batch folder runner."""
import numpy as np
import pytest
from PIL import Image

from modules.img2img import batch, editor_inputs, masks
from modules.img2img.resize import resize_image


def solid(size, colour, mode="RGB"):
    return Image.new(mode, size, colour)


def test_crop_and_resize_and_resize_and_fill():
    wide = Image.new("RGB", (100, 50))
    wide.paste((255, 0, 0), (0, 0, 50, 50))
    wide.paste((0, 0, 255), (50, 0, 100, 50))
    cropped = resize_image(1, wide, 40, 40)  # covers 80x40, centred: the outer 20 px columns cut
    assert cropped.size == (40, 40)
    assert cropped.getpixel((2, 20))[0] > 200 and cropped.getpixel((37, 20))[2] > 200
    filled = resize_image(2, wide, 40, 40)  # fits 40x20 in the middle; bands above and below stretched
    assert filled.size == (40, 40)
    assert filled.getpixel((2, 2)) == filled.getpixel((2, 10))
    assert filled.getpixel((2, 0))[0] > 200 and filled.getpixel((37, 39))[2] > 200


def test_crop_region_padding_and_aspect():
    mask = Image.new("L", (100, 100))
    mask.paste(255, (40, 45, 50, 55))
    box = masks.crop_region(mask, 5)
    assert box == (35, 40, 55, 60)
    assert masks.expand_to_aspect(box, 64, 32, 100, 100) == (25, 40, 65, 60)  # 40x20 = 2:1
    assert masks.expand_to_aspect((0, 0, 10, 10), 32, 64, 100, 100) == (0, 0, 10, 20)  # moved inside
    assert masks.crop_region(Image.new("L", (8, 8)), 4) is None


def test_mask_from_alpha_and_blur_kernel():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 0, 200))
    assert np.asarray(masks.to_mask(rgba)).sum() == 255
    blurred = masks.blur(solid((9, 9), 0, "L").copy(), 1, 0)
    assert blurred.size == (9, 9)


def test_editor_values_give_image_and_mask():
    background = solid((16, 16), (10, 20, 30))
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 150), (4, 4, 8, 8))
    value = {"background": background, "layers": [layer], "composite": background}
    image, mask = editor_inputs.inpaint_inputs(value)
    assert image.size == (16, 16) and np.asarray(mask).sum() == 16 * 255
    init, weakened = editor_inputs.inpaint_sketch_inputs(value, 50, 0)
    assert np.asarray(weakened).max() == 128
    with pytest.raises(editor_inputs.EditorInputError, match="Inpaint"):
        editor_inputs.inpaint_inputs({"background": None, "layers": [], "composite": None})


def test_batch_reports_unreadable_files_and_goes_on(tmp_path):
    solid((8, 8), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    solid((8, 8), (4, 5, 6)).save(tmp_path / "c.png")
    made = []

    class Done:
        images, infotexts = ["image"], ["text"]

    def make_p(image, mask):
        made.append(image.getpixel((0, 0)))
        from types import SimpleNamespace
        return SimpleNamespace(prompt="", negative_prompt="", override_settings={}, n_iter=1, batch_size=1)

    result = batch.run(batch.list_images(str(tmp_path)), make_p, lambda p: Done())
    assert made == [(1, 2, 3), (4, 5, 6)] and result.images == ["image", "image"]
    assert len(result.errors) == 1 and result.errors[0].startswith(str(tmp_path / "b.png"))


def test_pasting_an_inpainting_infotext_fills_the_img2img_controls(webui_session):
    from modules.ui import txt2img
    text = ("a boat\nSteps: 28, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 7, Seed: 9001, Size: 512x640, "
            "Denoising strength: 0.6, Mask blur: 8, Mask mode: Inpaint not masked, Masked content: latent noise, "
            "Inpaint area: Only masked, Masked area padding: 64, Noise multiplier: 1.05")
    names = ["denoising_strength", "mask_blur", "inpainting_mask_invert", "inpainting_fill", "inpaint_full_res",
             "inpaint_full_res_padding", "width", "height"]
    assert txt2img.values_from_infotext(text, names) == [0.6, 8, "Inpaint not masked", "latent noise",
                                                          "Only masked", 64, 512, 640]
