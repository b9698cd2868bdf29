"""The Settings tab's registry side: every §17 setting has A1111's label and a fitting control;
pages follow A1111's order; Apply checks a whole batch, lists changes and badges, saves; frozen
settings name their flag; config.json is written atomically and a corrupt one is moved aside."""
import json
import os

import gradio as gr
import pytest

from modules.options import OptionError, OptionInfo, Options
from modules.settings import apply, presentation
from modules.settings_table import SETTINGS
from modules.shared_options import freeze_from_flags, register_builtin_options
from modules import cmd_args


@pytest.fixture
def opts():
    o = Options()
    register_builtin_options(o)
    return o


VISIBLE_KEYS = [row[2] for row in SETTINGS if row[0] != "None"]


def test_every_setting_has_a1111_label_and_a_control_that_fits_its_default(opts):
    assert len(VISIBLE_KEYS) > 250
    for key in VISIBLE_KEYS:
        info = opts.data_labels[key]
        assert info.label == presentation.LABELS[key][0], key
        assert info.section and info.section[0] != "None", key
        if info.component == "slider":
            args = info.component_args
            assert args["minimum"] <= info.default <= args["maximum"], key
        if info.component in ("radio",):
            assert info.default in info.component_args["choices"], key
    # facts from A1111 spot-checked
    assert opts.data_labels["CLIP_stop_at_last_layers"].label == "Clip skip"
    assert opts.data_labels["CLIP_stop_at_last_layers"].component_args == {"minimum": 1, "maximum": 12, "step": 1}
    assert opts.data_labels["sd_vae"].label == "SD VAE"
    assert opts.data_labels["quicksettings_list"].label == "Quicksettings list"
    assert opts.data_labels["sd_lora"].section == ("extra_networks", "Extra Networks")
    assert opts.data_labels["hypertile_enable_unet"].section == ("hypertile", "Hypertile")


def test_pages_follow_a1111_order_and_extension_settings_join_in(opts):
    from modules.ui.settings import settings_pages
    opts.add_option("my_ext_knob", OptionInfo(5, "My extension knob", section=("my_ext", "My extension")))
    opts.add_option("lora_extra", OptionInfo(True, "Joins Extra Networks", section=("extra_networks", "Extra Networks")))
    pages = settings_pages(opts)
    labels = [p["label"] for p in pages]
    assert labels[:3] == ["Paths for saving", "Saving images/grids", "Saving to a directory"]
    assert labels[3:12] == ["Compatibility", "Extra Networks", "Optimizations", "Sampler parameters",
                            "Stable Diffusion", "Stable Diffusion 3", "Stable Diffusion XL", "VAE", "img2img"]
    assert labels[12:19] == ["Gallery", "Infotext", "Live previews", "Prompt editing", "Settings in UI",
                             "UI alternatives", "User interface"]
    assert labels[19:26] == ["API", "Profiler", "System", "Face restoration", "Postprocessing", "Upscaling",
                             "Training"]
    uncategorized = labels[26:]  # pages of built-in components and extensions, by label
    assert uncategorized == sorted(uncategorized)
    assert {"Canvas Hotkeys", "Hypertile", "Interrogate", "My extension"} <= set(uncategorized)
    extra = next(p for p in pages if p["label"] == "Extra Networks")
    assert "lora_extra" in extra["keys"] and "sd_lora" in extra["keys"]
    dom_ids = [p["dom_id"] for p in pages]
    assert len(set(dom_ids)) == len(dom_ids) and "settings_sd" in dom_ids
    shown = {key for p in pages for key in p["keys"]}
    assert set(VISIBLE_KEYS) <= shown and "sd_checkpoint_hash" not in shown


def test_every_setting_builds_its_control(webui_session):
    from modules import shared
    from modules.ui import settings_components
    with gr.Blocks():
        for key in VISIBLE_KEYS:
            info = shared.opts.data_labels[key]
            component = settings_components.create(key, info, getattr(shared.opts, key))
            assert component.label == info.label
    slider = settings_components.create("jpeg_quality", shared.opts.data_labels["jpeg_quality"], 80)
    assert isinstance(slider, gr.Slider) and (slider.minimum, slider.maximum, slider.step) == (1, 100, 1)
    assert "§" not in (settings_components.hint("sd_vae", shared.opts.data_labels["sd_vae"]))


def test_apply_lists_changes_and_badges_and_saves(opts, tmp_path, webui_session):
    target = tmp_path / "config.json"
    result = apply.apply_settings(opts, {"jpeg_quality": 90.0, "samples_save": True, "gallery_height": "40em",
                                         "samples_format": "png"}, str(target))
    assert result.changed == ["jpeg_quality", "gallery_height"]
    assert result.reload_ui == ["gallery_height"]
    assert "2 settings changed: jpeg_quality, gallery_height." in result.message()
    saved = json.loads(target.read_text(encoding="utf8"))
    assert saved["jpeg_quality"] == 90 and isinstance(saved["jpeg_quality"], int)
    assert apply.apply_settings(opts, {"jpeg_quality": 90}, str(target)).message() == "Nothing changed."


def test_a_bad_value_fails_the_whole_batch(opts, tmp_path, webui_session):
    target = tmp_path / "config.json"
    with pytest.raises(OptionError, match="jpeg_quality"):
        apply.apply_settings(opts, {"send_seed": False, "jpeg_quality": 90.5}, str(target))
    assert opts.send_seed is True and not target.exists()


def test_frozen_settings_name_their_flag(opts, tmp_path, webui_session):
    args = cmd_args.parse_args(["--freeze-specific-settings", "send_seed", "--hide-ui-dir-config"])
    freeze_from_flags(opts, args)
    with pytest.raises(OptionError, match="frozen by --freeze-specific-settings"):
        apply.apply_settings(opts, {"send_seed": False}, str(tmp_path / "c.json"))
    with pytest.raises(OptionError, match="frozen by --hide-ui-dir-config"):
        apply.apply_settings(opts, {"outdir_save": "elsewhere"}, str(tmp_path / "c.json"))
    # an unchanged frozen value is not a change
    assert apply.apply_settings(opts, {"send_seed": True}, str(tmp_path / "c.json")).changed == []


def test_config_save_is_atomic_and_leaves_no_temp_files(opts, tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    opts.set("jpeg_quality", 70)
    opts.save(str(target))
    before = target.read_text(encoding="utf8")

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", fail)
    opts.set("jpeg_quality", 71)
    with pytest.raises(OSError):
        opts.save(str(target))
    assert target.read_text(encoding="utf8") == before  # the old file is intact
    assert os.listdir(tmp_path) == ["config.json"]


@pytest.mark.parametrize("content", ['{"jpeg_quality": 7', '["a list"]', "\xff\xfe"])
def test_corrupt_config_is_moved_aside_and_defaults_are_used(opts, tmp_path, capsys, content):
    target = tmp_path / "config.json"
    target.write_bytes(content.encode("latin-1"))
    opts.load(str(target))
    assert opts.jpeg_quality == 80
    assert not target.exists()
    aside = [name for name in os.listdir(tmp_path) if name.startswith("config.json.corrupt-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content.encode("latin-1")
    out = capsys.readouterr().out
    assert "could not be read" in out and aside[0] in out and "default settings" in out
