"""Settings return_mask / return_mask_composite / save_mask / save_mask_composite: an inpainting job
appends each image's mask and masked composite after it, and saves them with -mask suffixes."""
import numpy as np

from tests.unit.test_img2img import box_mask, init_image, run, use

ALL_ON = {"return_mask": True, "return_mask_composite": True, "save_mask": True, "save_mask_composite": True,
          "samples_save": True, "samples_format": "png"}


def test_masks_and_composites_follow_each_image_and_are_saved(webui_session, tmp_path):
    shared = webui_session
    use(shared, "sd1")
    image, mask = init_image(seed=7), box_mask()
    processed, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, inpainting_fill=1, steps=2,
                       batch_size=2, do_not_save_samples=False, outpath_samples=str(tmp_path),
                       override_settings=ALL_ON)
    assert len(processed.images) == 6 and len(processed.infotexts) == 6
    inside = np.asarray(mask) == 255
    for k in range(2):
        result, returned_mask, masked = processed.images[3 * k:3 * k + 3]
        assert returned_mask.mode == "RGB" and returned_mask.size == (64, 64)
        assert np.array_equal(np.asarray(returned_mask), np.stack([np.asarray(mask)] * 3, axis=-1))
        assert masked.mode == "RGBA" and masked.size == (64, 64)
        rgba = np.asarray(masked)
        assert np.array_equal(rgba[..., 3], np.asarray(mask))  # transparent outside the mask
        # inside the mask the composite shows the denoised pixels, which are the result's there
        assert np.array_equal(rgba[inside][:, :3], np.asarray(result)[inside])
    names = sorted(f.name for f in tmp_path.rglob("*.png"))
    assert len([n for n in names if n.endswith("-mask.png")]) == 2
    assert len([n for n in names if n.endswith("-mask-composite.png")]) == 2
    assert names == ["00000-1234.png", "00001-1234-mask.png", "00002-1234-mask-composite.png",
                     "00003-1235.png", "00004-1235-mask.png", "00005-1235-mask-composite.png"]
    assert shared.opts.return_mask is False  # the override applied to that job only


def test_only_masked_mask_has_the_whole_picture_size_and_settings_off_add_nothing(webui_session):
    shared = webui_session
    use(shared, "sd1")
    image, mask = init_image(size=(64, 48), seed=8), box_mask(size=(64, 48), box=(8, 8, 24, 24))
    processed, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, inpainting_fill=1, steps=2,
                       width=32, height=32, inpaint_full_res=True, inpaint_full_res_padding=2,
                       override_settings={"return_mask": True})
    assert len(processed.images) == 2
    assert processed.images[1].size == (64, 48)
    assert np.array_equal(np.asarray(processed.images[1].convert("L")), np.asarray(mask))
    plain, _ = run(shared, init_images=[image], mask=mask, mask_blur=0, steps=2)
    assert len(plain.images) == 1
    txt = run(shared, init_images=[image], steps=2, override_settings={"return_mask": True})[0]
    assert len(txt.images) == 1  # no mask: plain img2img returns no extras


def test_the_four_settings_sit_in_a1111s_sections_with_its_labels(webui_session):
    labels = webui_session.opts.data_labels
    expected = {"return_mask": ("img2img", "For inpainting, include the greyscale mask in results for web"),
                "return_mask_composite": ("img2img", "For inpainting, include masked composite in results for web"),
                "save_mask": ("saving-images", "For inpainting, save a copy of the greyscale mask"),
                "save_mask_composite": ("saving-images", "For inpainting, save a masked composite")}
    for key, (section, label) in expected.items():
        assert labels[key].section[0] == section and labels[key].label == label and labels[key].default is False
