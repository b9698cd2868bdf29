"""ControlNet: model files in both layouts, units from API dicts, preprocessors, hint fitting, and the
residuals inside our sampler, on a tiny ControlNet made from the tiny SD1 UNet (controlnet.md §8)."""
import base64
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, sd_models
from modules.controlnet import hint as hints
from modules.controlnet import job, model_files, model_loading, preprocessors, units
from modules.controlnet.residuals import ControlHook, PreparedUnit, soft_scales
from tests.controlnet_models import tiny_controlnet, write_tiny_controlnets


@pytest.fixture(scope="module")
def controlnet_dir(data_dir):
    folder = data_dir / "models" / "ControlNet"
    return folder, write_tiny_controlnets(folder)


def use_sd1(shared):
    info = sd_models.find_checkpoint("tiny-sd1")
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def pattern(size=64) -> Image.Image:
    x = np.zeros((size, size, 3), dtype=np.uint8)
    x[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    x[:, : size // 8, 0] = 200
    return Image.fromarray(x)


# -- model files ---------------------------------------------------------------------------------

def test_layouts_load_to_identical_weights_and_list_by_title(webui_session, controlnet_dir):
    folder, reference = controlnet_dir
    model = use_sd1(webui_session)
    titles = [m.title for m in model_files.list_models()]
    assert "tiny_sd15_canny [e3b0c442]" in titles  # files under 1 MiB hash the empty string
    assert "tiny_sd15_prefixed [e3b0c442]" in titles
    assert any(t.startswith("tiny_sd15_diffusers [") for t in titles)
    for name in ("tiny_sd15_canny", "tiny_sd15_prefixed", "tiny_sd15_diffusers"):
        net = model_loading.load_controlnet(model_files.find_model(name), dict(model.unet.config), model.family)
        loaded = net.state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_lookup_rules_and_errors(webui_session, controlnet_dir):
    assert model_files.find_model("tiny_sd15_canny [e3b0c442]").stem == "tiny_sd15_canny"
    assert model_files.find_model("TINY_SD15_CANNY").stem == "tiny_sd15_canny"
    assert model_files.find_model("prefixed").stem == "tiny_sd15_prefixed"  # part of the stem
    with pytest.raises(model_files.ControlNetModelNotFound, match="valid names"):
        model_files.find_model("tiny_sd15_canny [deadbeef]")  # a wrong hash fails


def test_controlnet_of_another_family_is_refused(webui_session, controlnet_dir):
    model = use_sd1(webui_session)
    with pytest.raises(model_loading.ControlNetLoadError, match="SDXL model; the loaded checkpoint is SD1"):
        model_loading.load_controlnet(model_files.find_model("tiny_xl_canny"), dict(model.unet.config), model.family)


# -- units ---------------------------------------------------------------------------------------

def test_unit_fields_accept_ints_strings_and_aliases():
    unit = units.unit_from_dict({"module": "canny", "model": "x", "resize_mode": 2, "control_mode": "2",
                                 "hr_option": "HiResFixOption.LOW_RES_ONLY".replace("LOW_RES_ONLY", "Low res only"),
                                 "lowvram": True, "guidance": 0.5}, 0)
    assert (unit.resize_mode, unit.control_mode, unit.low_vram, unit.guidance_end) == \
        ("Resize and Fill", "ControlNet is more important", True, 0.5)
    assert units.unit_from_dict({"resize_mode": "Inner Fit (Scale to Fit)"}, 0).resize_mode == "Crop and Resize"
    assert units.unit_from_dict({"resize_mode": 3}, 0).resize_mode == "Just Resize"
    assert units.unit_from_dict({"guessmode": True, "whatever": 1}, 0).module == "none"  # ignored keys


def test_enabled_rule_when_absent():
    assert units.unit_from_dict({"model": "m"}, 0).enabled
    assert units.unit_from_dict({"input_image": b64(pattern())}, 0).enabled
    assert not units.unit_from_dict({"module": "canny"}, 0).enabled
    assert not units.unit_from_dict({"model": "m", "enabled": False}, 0).enabled


@pytest.mark.parametrize("fields, message", [
    ({"weight": 3}, "unit 1: weight must be between 0 and 2"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "unit 1: guidance_start"),
    ({"control_mode": "loud"}, "unit 1: control_mode must be one of"),
    ({"image": "not base64!"}, "unit 1: image is not"),
    ({"mask": "a", "mask_image": "b"}, "either mask or mask_image"),
    ({"weight": "nan"}, "finite"),
])
def test_bad_unit_fields_name_unit_and_field(fields, message):
    with pytest.raises(units.UnitError, match=message):
        units.unit_from_dict(fields, 1)


def test_infotext_line_round_trips():
    unit = units.ControlNetUnit(enabled=True, module="canny", model="m [e3b0c442]", processor_res=512,
                                threshold_a=100, threshold_b=200)
    text = unit.infotext("m [e3b0c442]")
    assert text == ("Module: canny, Model: m [e3b0c442], Weight: 1.0, Resize Mode: Crop and Resize, "
                    "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, "
                    "Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced")
    parsed = units.parse_infotext_value(text)
    assert parsed["module"] == "canny" and parsed["processor_res"] == 512 and parsed["pixel_perfect"] is False


# -- preprocessors and hint fitting ----------------------------------------------------------------

def test_canny_equals_cv2_canny():
    rng = np.random.default_rng(0)
    image = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    out = preprocessors.run(preprocessors.find("canny"), image, 512, 100, 200)
    assert np.array_equal(out[:, :, 0], cv2.Canny(image, 100, 200))
    assert out.shape == (512, 512, 3)
    small = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    out = preprocessors.run(preprocessors.find("canny"), image, 256, 50, 150)  # short side -> res
    assert np.array_equal(out[:, :, 0], cv2.Canny(small, 50, 150))


def test_pure_operations_match_their_definitions():
    rng = np.random.default_rng(1)
    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    assert np.array_equal(preprocessors.run(preprocessors.find("invert (from white bg & black line)"), image),
                          255 - image)
    out = preprocessors.run(preprocessors.find("threshold"), image, 64, 100)
    assert np.array_equal(out[:, :, 0], np.where(image.min(axis=2) > 100, 255, 0))
    assert preprocessors.run(preprocessors.find("None"), image) is not None  # names are case-insensitive


def test_network_preprocessor_without_weights_says_which_file():
    with pytest.raises(preprocessors.PreprocessorError, match=r"dpt_hybrid-midas-501f0c75\.pt in .*midas"):
        preprocessors.check_usable(preprocessors.find("depth_midas"))


def test_resize_modes_sizes_fill_and_offsets():
    x = np.zeros((40, 80, 3), dtype=np.uint8)
    x[:, :, 0] = np.arange(80, dtype=np.uint8)[None, :] * 3  # many colours: a smooth resize
    x[0, :, 1] = 9  # border pixels: their median is the fill colour
    assert hints.fit(x, 64, 64, "Just Resize").shape == (64, 64, 3)
    crop = hints.fit(x, 64, 64, "Crop and Resize")
    assert crop.shape == (64, 64, 3)
    scaled = hints.high_quality_resize(x, (128, 64))
    assert np.array_equal(crop, scaled[:, 32:96])  # centre crop, offset floor((128 - 64) / 2)
    fill = hints.fit(x, 64, 64, "Resize and Fill")
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    assert np.array_equal(fill[0, 0], np.median(border, axis=0).astype(np.uint8))
    assert np.array_equal(fill[16:48], hints.high_quality_resize(x, (64, 32)))  # pasted at floor(32 / 2)


def test_pixel_perfect_resolution():
    assert hints.pixel_perfect_resolution(100, 100, 50, 100, "Crop and Resize") == 100
    assert hints.pixel_perfect_resolution(100, 100, 50, 100, "Resize and Fill") == 50


# -- residuals in the sampler ----------------------------------------------------------------------

def generate(shared, units_list, steps=6, **kwargs):
    fields = dict(prompt="a cat", negative_prompt="blurry", steps=steps, width=64, height=64, seed=7,
                  cfg_scale=6.0, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True,
                  controlnet_units=units_list)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    processed = shared.job_queue.run(lambda: processing.process_images(p))
    return processed, p


def canny_unit(**fields):
    values = dict(enabled=True, module="canny", model="tiny_sd15_canny", image=pattern(), processor_res=64)
    values.update(fields)
    return units.ControlNetUnit(**values)


def test_weight_zero_and_a_window_that_never_opens_change_nothing(webui_session, controlnet_dir):
    shared = webui_session
    use_sd1(shared)
    plain, _ = generate(shared, [])
    base = np.asarray(plain.images[0])
    for unit in (canny_unit(weight=0.0), canny_unit(guidance_start=1.0)):
        processed, p = generate(shared, [unit])
        assert np.array_equal(np.asarray(processed.images[0]), base)
        assert p.controlnet_hook.calls_with_control == []
    controlled, p = generate(shared, [canny_unit()])
    assert not np.array_equal(np.asarray(controlled.images[0]), base)
    assert p.extra_generation_params["ControlNet 0"].startswith("Module: canny, Model: tiny_sd15_canny [e3b0c442]")
    assert len(controlled.images) == 2  # the detected map follows the image
    assert len(controlled.infotexts) == 1


def test_guidance_window_follows_a1111_step_counting(webui_session, controlnet_dir):
    shared = webui_session
    use_sd1(shared)
    _, p = generate(shared, [canny_unit(guidance_end=0.0)])
    assert [step for _, step, _ in p.controlnet_hook.calls_with_control] == [0, 0]  # steps 0 and 1
    _, p = generate(shared, [canny_unit(guidance_start=0.5)])
    assert [step for _, step, _ in p.controlnet_hook.calls_with_control] == [3, 4]  # steps 4 and 5 of 6


def test_hires_pass_gets_its_own_hint_and_the_hr_option(webui_session, controlnet_dir):
    shared = webui_session
    use_sd1(shared)
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=3, denoising_strength=0.5,
                 steps=3)
    _, p = generate(shared, [canny_unit()], **hires)
    passes = [name for name, _, _ in p.controlnet_hook.calls_with_control]
    assert passes.count("first") == 3 and passes.count("hires") == 3
    assert p.controlnet_hook.units[0].hints["hires"].shape[-2:] == (96, 96)
    _, p = generate(shared, [canny_unit(hr_option="Low res only")], **hires)
    assert {name for name, _, _ in p.controlnet_hook.calls_with_control} == {"first"}
    _, p = generate(shared, [canny_unit(hr_option="High res only")], **hires)
    assert {name for name, _, _ in p.controlnet_hook.calls_with_control} == {"hires"}


def _hook_inputs(net):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    context = torch.randn(2, 77, 32)
    hint_image = torch.rand(1, 3, 64, 64)
    return x, torch.tensor([500.0, 500.0]), context, hint_image


def _residuals(net, hint_image, mode="Balanced", weight=1.0, n_cond=1, x=None, t=None, context=None):
    unit = PreparedUnit(0, net, weight, 0.0, 1.0, mode, "Both", {"first": hint_image})
    hook = ControlHook([unit], hires_enabled=False)
    hook.begin_pass(10, hires=False)
    return hook(x, t, context, None, n_cond)


@torch.no_grad()
def test_residuals_scale_with_weight_modes_and_units_sum():
    net, _ = tiny_controlnet()
    x, t, context, hint_image = _hook_inputs(net)
    one = _residuals(net, hint_image, x=x, t=t, context=context)
    half = _residuals(net, hint_image, weight=0.5, x=x, t=t, context=context)
    for a, b in zip(one["down_block_additional_residuals"], half["down_block_additional_residuals"]):
        assert torch.allclose(b, a * 0.5, atol=1e-7)
    # ControlNet is more important: uncond rows exactly zero, cond rows soft-scaled
    strong = _residuals(net, hint_image, mode="ControlNet is more important", x=x, t=t, context=context)
    all_one = [*one["down_block_additional_residuals"], one["mid_block_additional_residual"]]
    all_strong = [*strong["down_block_additional_residuals"], strong["mid_block_additional_residual"]]
    scales = soft_scales(1.0, len(all_one))
    assert scales[-1] == pytest.approx(0.825 ** (12 - (len(all_one) - 1)))
    for a, b, s in zip(all_one, all_strong, scales):
        assert torch.count_nonzero(b[1:]) == 0
        assert torch.allclose(b[:1], a[:1] * s, atol=1e-6)
    # two units are summed
    unit = PreparedUnit(0, net, 1.0, 0.0, 1.0, "Balanced", "Both", {"first": hint_image})
    hook = ControlHook([unit, unit], hires_enabled=False)
    hook.begin_pass(10, hires=False)
    both = hook(x, t, context, None, 1)
    assert torch.allclose(both["mid_block_additional_residual"], one["mid_block_additional_residual"] * 2)


def test_missing_model_or_image_is_refused_before_sampling(webui_session, controlnet_dir):
    with pytest.raises(job.ControlNetError, match="unit 0: ControlNet model 'nope' not found"):
        job.check_units([canny_unit(model="nope")])
    with pytest.raises(job.ControlNetError, match="unit 0: no image"):
        job.check_units([canny_unit(image=None)])
    with pytest.raises(job.ControlNetError, match="unit 0: Preprocessor 'depth_midas' needs"):
        job.check_units([canny_unit(module="depth_midas")])


def test_detected_maps_autosave_into_their_module_folder(webui_session, controlnet_dir, tmp_path):
    shared = webui_session
    use_sd1(shared)
    processed, _ = generate(shared, [canny_unit()], steps=2, do_not_save_samples=False, outpath_samples=str(tmp_path),
                            override_settings={"control_net_detectmap_autosaving": True,
                                               "control_net_no_detectmap": True, "samples_save": False})
    assert len(processed.images) == 1  # control_net_no_detectmap: not among the results
    saved = list((tmp_path / "detected_maps" / "canny").rglob("*.png"))
    assert len(saved) == 1
