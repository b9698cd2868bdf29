"""Reading an infotext back into the txt2img controls, settings included ("Override settings")."""
import gradio as gr
import pytest

from modules import infotext_fields, sd_models
from modules.ui import txt2img

NAMES = ["prompt", "steps", "sampler_name", "scheduler", "enable_hr", "override_settings"]


def test_fields_and_settings_from_an_infotext(webui_session):
    text = ("a cat\nNegative prompt: dog\nSteps: 5, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 7, "
            "Size: 64x64, Clip skip: 2, RNG: CPU, ENSD: 31337, Model hash: 0123456789, VAE: missing.safetensors")
    prompt, steps, sampler, scheduler, enable_hr, overrides = txt2img.values_from_infotext(text, NAMES)
    assert (prompt, steps, sampler, scheduler) == ("a cat", 5, "DPM++ 2M", "Karras")
    assert enable_hr is gr.skip() or enable_hr == gr.skip()  # no hires keys: hires stays as it was
    # settings that differ from the current ones; an unknown model hash or VAE is not offered
    assert overrides["value"] == overrides["choices"] == ["Clip skip: 2", "RNG: CPU", "ENSD: 31337"]
    assert overrides["visible"] is True
    assert infotext_fields.overrides_from_pairs(overrides["value"], webui_session.opts) == {
        "CLIP_stop_at_last_layers": 2, "randn_source": "CPU", "eta_noise_seed_delta": 31337}


def test_settings_equal_to_the_current_ones_are_not_offered(webui_session):
    *_, overrides = txt2img.values_from_infotext("a cat\nSteps: 5, Clip skip: 1, RNG: GPU", NAMES)
    assert overrides["value"] == [] and overrides["visible"] is False


def test_infotext_skip_pasting_is_honoured(webui_session):
    with webui_session.opts.override({"infotext_skip_pasting": ["Clip skip"]}):
        *_, overrides = txt2img.values_from_infotext("a cat\nSteps: 5, Clip skip: 2, RNG: CPU", NAMES)
    assert overrides["value"] == ["RNG: CPU"]


def test_model_hash_is_offered_only_with_weights_auto_swap(webui_session):
    other = next(info for info in sd_models.checkpoints_list.values() if info.name.startswith("tiny-sd2"))
    other.calculate_shorthash()
    text = f"a cat\nSteps: 5, Sampler: Euler, Model hash: {other.shorthash}"
    *_, overrides = txt2img.values_from_infotext(text, NAMES)
    assert overrides["value"] == []  # disable_weights_auto_swap is on by default, as in A1111
    with webui_session.opts.override({"disable_weights_auto_swap": False}):
        *_, overrides = txt2img.values_from_infotext(text, NAMES)
        assert overrides["value"] == [f"Model hash: {other.shorthash}"]
        assert infotext_fields.overrides_from_pairs(overrides["value"], webui_session.opts) == {
            "sd_model_checkpoint": other.title}
        with pytest.raises(sd_models.CheckpointNotFound, match="not found"):
            infotext_fields.overrides_from_pairs(["Model hash: ffffffffff"], webui_session.opts)


def test_bad_override_entries_are_user_errors(webui_session):
    with pytest.raises(ValueError, match="expected 'Name: value'"):
        infotext_fields.overrides_from_pairs(["no separator"], webui_session.opts)
    with pytest.raises(ValueError, match="cannot take the value"):
        infotext_fields.overrides_from_pairs(["Clip skip: many"], webui_session.opts)
    with pytest.raises(ValueError, match="VAE 'missing.safetensors' not found"):
        infotext_fields.overrides_from_pairs(["VAE: missing.safetensors"], webui_session.opts)


def test_time_taken_text():
    assert txt2img.format_duration(2.5) == "2.50 sec."
    assert txt2img.format_duration(65.3) == "1 min. 5.3 sec."
