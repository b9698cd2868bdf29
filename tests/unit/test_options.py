import threading

import pytest

from modules.options import OptionError, OptionInfo, Options
from modules.shared_options import register_builtin_options


@pytest.fixture
def opts():
    o = Options()
    register_builtin_options(o)
    return o


def test_builtin_defaults(opts):
    assert opts.samples_format == "png"
    assert opts.CLIP_stop_at_last_layers == 1
    assert opts.outdir_txt2img_samples == "outputs/txt2img-images"
    assert opts.sd_model_checkpoint is None
    assert opts.quicksettings_list == ["sd_model_checkpoint"]


def test_conversion_and_errors(opts):
    assert opts.validate({"CLIP_stop_at_last_layers": "2", "send_seed": "False"}) == \
        {"CLIP_stop_at_last_layers": 2, "send_seed": False}
    with pytest.raises(OptionError, match="Unknown setting 'nope'"):
        opts.validate({"nope": 1})
    with pytest.raises(OptionError, match="cannot take the value"):
        opts.validate({"CLIP_stop_at_last_layers": 1.5})
    with pytest.raises(OptionError, match="through the API"):
        opts.validate({"api_useragent": "x"}, api=True)


def test_override_is_local_to_the_context_and_restored(opts):
    seen_elsewhere = []
    with opts.override({"CLIP_stop_at_last_layers": 2}):
        assert opts.CLIP_stop_at_last_layers == 2
        t = threading.Thread(target=lambda: seen_elsewhere.append(opts.CLIP_stop_at_last_layers))
        t.start()
        t.join()
    assert seen_elsewhere == [1]  # other threads (jobs, requests) never see it
    assert opts.CLIP_stop_at_last_layers == 1
    assert opts.data["CLIP_stop_at_last_layers"] == 1


def test_save_and_load_round_trip(opts, tmp_path):
    opts.set("jpeg_quality", 90)
    opts.save(str(tmp_path / "config.json"))
    other = Options()
    register_builtin_options(other)
    other.load(str(tmp_path / "config.json"))
    assert other.jpeg_quality == 90


def test_extension_option_registration(opts):
    opts.add_option("my_ext_value", OptionInfo(3, "My value", section=("ext", "Ext")).info("hint"))
    assert opts.my_ext_value == 3
    assert "my_ext_value" in opts.current_values()
