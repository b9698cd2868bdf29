"""ControlNet's always-on script pieces without a server: infotext lines (current, Forge and 2023
formats) read back into unit fields, and the slots' parsing."""
import pytest

from modules.controlnet import infotext, units


def test_current_format_reads_back_every_field():
    unit = units.ControlNetUnit(enabled=True, module="canny", weight=0.55, resize_mode="Resize and Fill",
                                processor_res=256, threshold_a=90, threshold_b=180, guidance_start=0.1,
                                guidance_end=0.8, control_mode="My prompt is more important")
    fields = infotext.unit_fields({"ControlNet 1": unit.infotext("tiny [e3b0c442]")}, 1)
    assert fields == {"module": "canny", "model": "tiny [e3b0c442]", "weight": 0.55,
                      "resize_mode": "Resize and Fill", "processor_res": 256, "threshold_a": 90,
                      "threshold_b": 180, "guidance_start": 0.1, "guidance_end": 0.8, "pixel_perfect": False,
                      "control_mode": "My prompt is more important"}
    assert infotext.unit_fields({"ControlNet 1": "Module: canny"}, 0) is None
    forge = infotext.parse_unit_text("Module: canny, Model: x [1], Weight: 1, Hr Option: Low res only")
    assert forge["hr_option"] == "Low res only" and forge["weight"] == 1


def test_legacy_2023_format_and_one_unit_key():
    text = ("preprocessor: canny, model: control_sd15_canny [fef5e48e], weight: 0.7, starting/ending: (0.1, 0.9), "
            "resize mode: Crop and Resize, pixel perfect: True, control mode: Balanced, "
            "preprocessor params: (512, 100, 200)")
    fields = infotext.unit_fields({"ControlNet": text}, 0)
    assert fields == {"module": "canny", "model": "control_sd15_canny [fef5e48e]", "weight": 0.7,
                      "guidance_start": 0.1, "guidance_end": 0.9, "resize_mode": "Crop and Resize",
                      "pixel_perfect": True, "control_mode": "Balanced", "processor_res": 512,
                      "threshold_a": 100, "threshold_b": 200}
    assert infotext.unit_fields({"ControlNet": text}, 1) is None
    # the parsed fields make a valid unit
    unit = units.unit_from_dict(fields, 0)
    assert (unit.enabled, unit.guidance_end, unit.pixel_perfect) == (True, 0.9, True)


def test_units_from_slots_drop_extras_and_ignore_non_dicts(caplog):
    slots = [None, {"module": "canny", "enabled": True}, "junk", {"enabled": True, "module": "blur"}]
    parsed = units.units_from_args(slots, 3)
    assert [u.module for u in parsed] == ["canny"]
    assert "4 units given for 3 slots (control_net_unit_count); the last 1 dropped" in caplog.text
    parsed = units.units_from_args([7, ["a"], {"module": "blur", "enabled": True}, {"module": "canny"}], 4)
    assert [(u.module, u.enabled) for u in parsed] == [("blur", True), ("canny", False)]
    with pytest.raises(units.UnitError, match="unit 0: weight must be between 0 and 2"):
        units.units_from_args([{"weight": 3}], 3)


def test_shuffle_is_a_seeded_smooth_remap_of_the_image():
    import numpy as np

    from modules.controlnet import preprocessors
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pre = preprocessors.find("shuffle")
    np.random.seed(7)
    first = preprocessors.run(pre, image)
    np.random.seed(7)
    again = preprocessors.run(pre, image)
    np.random.seed(8)
    other = preprocessors.run(pre, image)
    assert first.shape == (512, 768, 3)  # resolution fixed at 512
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # a remap only moves pixels: every output colour lies within the input's range per channel
    assert (first.min(axis=(0, 1)) >= image.min(axis=(0, 1))).all()
    assert (first.max(axis=(0, 1)) <= image.max(axis=(0, 1))).all()


def test_img2img_unit_without_image_takes_the_init_image_and_a1111_mask():
    from types import SimpleNamespace

    import cv2
    import numpy as np
    from PIL import Image

    from modules.controlnet import job
    init = Image.fromarray(np.full((32, 48, 3), 90, dtype=np.uint8))
    mask = np.zeros((32, 48), dtype=np.uint8)
    mask[8:24, 10:30] = 255
    p = SimpleNamespace(init_images=[init], input_mask=Image.fromarray(mask), inpainting_mask_invert=1,
                        mask_blur_x=2, mask_blur_y=3)
    source = job._input_array(units.ControlNetUnit(enabled=True, module="inpaint"), 0, p)
    # per axis, kernel 2*int(2.5*sigma+0.5)+1: 11 for x (sigma 2), 17 for y (sigma 3)
    kernel_y = 2 * int(2.5 * 3 + 0.5) + 1
    expected = cv2.GaussianBlur(cv2.GaussianBlur(255 - mask, (11, 1), sigmaX=2), (1, kernel_y), sigmaX=0, sigmaY=3)
    assert source.shape == (32, 48, 4)
    assert np.array_equal(source[:, :, :3], np.asarray(init))
    assert np.array_equal(source[:, :, 3], expected)
    # a unit with its own image keeps its (absent) mask
    own = job._input_array(units.ControlNetUnit(enabled=True, module="inpaint", image=init), 0, p)
    assert not own[:, :, 3].any()


def test_api_alwayson_args_beyond_the_slots_are_dropped_with_a_warning(caplog):
    from types import SimpleNamespace

    from modules.api import scripts_routes
    script = SimpleNamespace(name="controlnet", args_from=1, args_to=4, controls=[None] * 3)
    runner = SimpleNamespace(default_args=lambda: [0, None, None, None, "next script"], selectable_scripts=[],
                             alwayson_scripts=[script])
    args = scripts_routes.script_args_for(runner, None, None, {"ControlNet": {"args": ["a", "b", "c", "d", "e"]}})
    assert args == [0, "a", "b", "c", "next script"]  # the next script's slot is untouched
    assert "script 'controlnet' takes 3 arguments, got 5; the last 2 dropped" in caplog.text
