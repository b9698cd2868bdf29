"""Slider settings only take a number inside the slider's range (issue 14): Options.validate, a
job's override_settings and the Settings tab's Apply all refuse the value with one message that
names the key and the range, and nothing of the batch is applied."""
import dataclasses
import json
import math

import pytest

from modules.options import OptionError, OptionInfo, Options
from modules.settings import slider_ranges
from modules.shared_options import register_builtin_options


@pytest.fixture
def opts():
    o = Options()
    register_builtin_options(o)
    return o


def _range_text(low, high):
    text = lambda v: str(int(v)) if float(v).is_integer() else str(v)  # noqa: E731
    return f"expected a number from {text(low)} to {text(high)}"


def test_every_slider_refuses_values_past_either_end_and_takes_its_ends(opts):
    sliders = {key: info for key, info in opts.data_labels.items() if info.component == "slider"}
    assert len(sliders) > 40
    for key, info in sliders.items():
        low, high, step = (info.component_args[k] for k in ("minimum", "maximum", "step"))
        for outside in (high + step, low - step):
            with pytest.raises(OptionError) as raised:
                opts.validate({key: outside})
            assert str(raised.value) == f"Setting '{key}' cannot take the value {outside!r}: {_range_text(low, high)}"
        for inside in (low, high):
            assert opts.validate({key: inside})[key] == inside, key


@pytest.mark.parametrize("value", [True, "abc", None, [3], {"a": 1}, float("nan"), float("inf"), "1e9"])
def test_a_slider_value_of_the_wrong_type_names_the_range(opts, value):
    with pytest.raises(OptionError, match=r"^Setting 'CLIP_stop_at_last_layers' cannot take the value .*: "
                                          r"expected a number from 1 to 12$"):
        opts.validate({"CLIP_stop_at_last_layers": value})


def test_numbers_as_text_inside_the_range_are_converted(opts):
    assert opts.validate({"jpeg_quality": "55", "code_former_weight": "0.25"}) == \
        {"jpeg_quality": 55, "code_former_weight": 0.25}


def test_a_refused_value_changes_nothing_and_overrides_refuse_it_too(opts):
    with pytest.raises(OptionError, match="jpeg_quality"):
        opts.set("jpeg_quality", 101)
    assert opts.jpeg_quality == opts.get_default("jpeg_quality")
    with pytest.raises(OptionError, match="from 0 to 0.9"):
        with opts.override({"token_merging_ratio": 0.95}):
            pass
    # a value stored before the check existed can still be posted back unchanged (GET -> POST round trip)
    opts.data["jpeg_quality"] = 1000
    assert opts.validate({"jpeg_quality": 1000}) == {"jpeg_quality": 1000}


def test_extension_sliders_are_checked_whether_named_by_string_or_component_class(opts):
    class Slider:  # stands for gr.Slider, which extensions pass as the component
        pass
    opts.add_option("ext_strength", OptionInfo(0.5, "Strength", Slider, {"minimum": 0.0, "maximum": 1.0}))
    opts.add_option("ext_dynamic", OptionInfo(3, "Dynamic", "slider", lambda: {"minimum": 0, "maximum": 5}))
    with pytest.raises(OptionError, match=r"'ext_strength' cannot take the value 1\.5: expected a number from 0 to 1$"):
        opts.validate({"ext_strength": 1.5})
    assert slider_ranges.bounds(opts.data_labels["ext_dynamic"]) is None  # computed ranges are not called
    assert opts.validate({"ext_dynamic": 9}) == {"ext_dynamic": 9}


def test_settings_tab_apply_reports_the_range_and_saves_nothing(webui_session, tmp_path, monkeypatch):
    from modules.ui import settings as settings_tab
    shared = webui_session
    settings_file = tmp_path / "config.json"
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, settings_file=str(settings_file)))
    before = (shared.opts.jpeg_quality, shared.opts.samples_format)
    message = settings_tab.apply_from_ui(["samples_format", "jpeg_quality"], ("jpg", 150))
    assert message == ("<span class='error'>Settings not applied: Setting 'jpeg_quality' cannot take the "
                       "value 150: expected a number from 1 to 100</span>")
    assert (shared.opts.jpeg_quality, shared.opts.samples_format) == before
    assert not settings_file.exists()
    # inside the range the same batch applies and is saved
    try:
        message = settings_tab.apply_from_ui(["samples_format", "jpeg_quality"], ("jpg", 90))
        assert message.startswith("2 settings changed")
        saved = json.loads(settings_file.read_text())
        assert saved["jpeg_quality"] == 90 and saved["samples_format"] == "jpg"
    finally:
        shared.opts.set("jpeg_quality", before[0])
        shared.opts.set("samples_format", before[1])


def test_every_registered_slider_default_is_inside_its_range(webui_session):
    """Extensions' and components' sliders too: a default outside its range could not be set back."""
    for key, info in webui_session.opts.data_labels.items():
        limits = slider_ranges.bounds(info)
        if limits is not None and info.default is not None:
            assert limits[0] <= info.default <= limits[1] and math.isfinite(info.default), key


def test_a_saved_value_outside_its_slider_range_is_replaced_by_the_default_at_load(opts, tmp_path, capsys):
    config = tmp_path / "config.json"
    content = json.dumps({"img2img_editor_height": 99999, "jpeg_quality": -5, "CLIP_stop_at_last_layers": 3,
                          "code_former_weight": 0.25})
    config.write_text(content)
    opts.load(str(config))
    assert (opts.img2img_editor_height, opts.jpeg_quality) == (720, 80)
    assert (opts.CLIP_stop_at_last_layers, opts.code_former_weight) == (3, 0.25)  # inside: kept
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"Settings file {config}: Setting 'img2img_editor_height' cannot take the value 99999: "
        "expected a number from 80 to 1600; using the default 720 instead",
        f"Settings file {config}: Setting 'jpeg_quality' cannot take the value -5: "
        "expected a number from 1 to 100; using the default 80 instead"]
    assert config.read_text() == content  # the file is not rewritten by loading
    opts.save(str(config))  # the next save writes what is in use
    saved = json.loads(config.read_text())
    assert (saved["img2img_editor_height"], saved["jpeg_quality"], saved["CLIP_stop_at_last_layers"]) == (720, 80, 3)


def test_a_saved_value_of_a_setting_registered_after_load_is_checked_when_it_registers(opts, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ext_strength": 7.5, "ext_steps": "12"}))
    opts.load(str(config))
    assert opts.data["ext_strength"] == 7.5 and capsys.readouterr().out == ""  # unknown yet: kept as it is
    opts.add_option("ext_strength", OptionInfo(0.5, "Strength", "slider", {"minimum": 0.0, "maximum": 1.0}))
    opts.add_option("ext_steps", OptionInfo(20, "Steps", "slider", {"minimum": 1, "maximum": 150}))
    assert (opts.ext_strength, opts.ext_steps) == (0.5, 12)
    assert capsys.readouterr().out == (f"Settings file {config}: Setting 'ext_strength' cannot take the value "
                                       "7.5: expected a number from 0 to 1; using the default 0.5 instead\n")
    opts.set("ext_strength", 0.75)
    opts.add_option("ext_strength", OptionInfo(0.5, "Strength", "slider", {"minimum": 0.0, "maximum": 1.0}))
    assert opts.ext_strength == 0.75  # registering again keeps the value set since


@pytest.mark.parametrize("key, value", [("CLIP_stop_at_last_layers", 2.5), ("jpeg_quality", 90.5)])
def test_a_fraction_for_an_integer_slider_is_refused_naming_the_key(opts, key, value):
    low, high = (opts.data_labels[key].component_args[k] for k in ("minimum", "maximum"))
    expected = f"Setting '{key}' cannot take the value {value}: expected a whole number from {low} to {high}"
    with pytest.raises(OptionError) as raised:
        opts.validate({key: value})
    assert str(raised.value) == expected
    assert opts.validate({key: float(low + 1)}) == {key: low + 1}  # a whole float is taken as the integer
    assert opts.validate({"code_former_weight": 0.1234}) == {"code_former_weight": 0.1234}  # off-step float: kept


def test_a_fraction_in_override_settings_is_a_422_naming_the_key(webui_session):
    from fastapi import HTTPException

    from modules.api.api import validate_overrides
    with pytest.raises(HTTPException) as raised:
        validate_overrides({"CLIP_stop_at_last_layers": 2.5})
    assert raised.value.status_code == 422
    assert raised.value.detail == ("Setting 'CLIP_stop_at_last_layers' cannot take the value 2.5: "
                                   "expected a whole number from 1 to 12")
    with pytest.raises(HTTPException, match="eta_noise_seed_delta"):
        validate_overrides({"eta_noise_seed_delta": 2.5})  # an integer setting without a slider
