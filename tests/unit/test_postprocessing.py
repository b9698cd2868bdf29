"""The Extras runner, the Upscale step's planning and cache, infotext, and the postprocessing
script API (extras.md §2.4, §4, §7; extensions.md §7.2)."""
import numpy as np
import pytest
from PIL import Image

from modules import scripts_postprocessing, shared
from modules.postprocessing import extras_job, runner, upscale_step
from modules.upscaling import result_cache


def noise(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_step_order_follows_rank_then_the_order_setting():
    training = ["Split oversized images", "Auto focal point crop", "Auto-sized crop", "Create flipped copies",
                "Caption"]
    assert [s.name for s in runner.ordered_steps()] == ["Upscale", "GFPGAN", "CodeFormer", *training]
    with shared.opts.override({"postprocessing_operation_order": ["CodeFormer"],
                               "postprocessing_disable_in_extras": ["GFPGAN", *training]}):
        assert [s.name for s in runner.ordered_steps()] == ["CodeFormer", "Upscale"]


def test_infotext_and_html_info():
    info = {"Postprocess upscale by": 2.0, "Skipped": None, "Note": "a, b", "Flip": "Flip"}
    text = runner.infotext(info)
    assert text == 'Postprocess upscale by: 2.0, Note: "a, b", Flip'
    assert runner.html_info("a <b> & c\nline 2") == "<p>a &lt;b&gt; &amp; c<br>line 2</p>"


def test_max_side_length_acts_as_scale_to_without_crop():
    step = upscale_step.ScriptPostprocessingUpscale()
    pp = scripts_postprocessing.PostprocessedImage(noise(100, 50))
    step.process(pp, upscale_mode=0, upscale_by=4, max_side_length=200, upscaler_1_name="Lanczos")
    assert pp.image.size == (200, 96)  # s = 2: ⌊200⌋₈ × ⌊100⌋₈
    assert pp.info == {"Postprocess upscale by": 4, "Max side length": 200, "Postprocess upscaler": "Lanczos"}
    pp = scripts_postprocessing.PostprocessedImage(noise(100, 50))
    step.process_firstpass(pp, upscale_mode=0, upscale_by=3, max_side_length=0)
    assert (pp.shared.target_width, pp.shared.target_height) == (300, 150)  # M = 0: no limit


def test_scale_to_crop_exact_without_black_bars():
    step = upscale_step.ScriptPostprocessingUpscale()
    pp = scripts_postprocessing.PostprocessedImage(Image.new("RGB", (512, 512), (200, 10, 10)))
    step.process(pp, upscale_mode=1, upscale_to_width=1001, upscale_to_height=700, upscale_crop=True,
                 upscaler_1_name="Lanczos")
    assert pp.image.size == (1001, 700)
    assert np.asarray(pp.image).min(axis=(0, 1)).tolist()[0] > 150  # no black column


def test_result_cache_hits_limits_and_keys(monkeypatch):
    calls = []
    real = upscale_step.upscaling.upscale

    def counting(image, scale, name):
        calls.append(name)
        return real(image, scale, name)
    monkeypatch.setattr(upscale_step.upscaling, "upscale", counting)
    result_cache.clear()
    src = noise(20, 20)
    first = upscale_step.cached_upscale(src, 2, "Lanczos")
    assert upscale_step.cached_upscale(src, 2, "Lanczos") is first and calls == ["Lanczos"]
    upscale_step.cached_upscale(noise(20, 20, seed=1), 2, "Lanczos")
    assert len(calls) == 2
    with shared.opts.override({"upscaling_max_images_in_cache": 1}):
        upscale_step.cached_upscale(noise(20, 20, seed=2), 2, "Lanczos")
        assert result_cache.size() <= 2
        upscale_step.cached_upscale(noise(20, 20, seed=3), 2, "Nearest")
        assert result_cache.size() == 1
    with shared.opts.override({"upscaling_max_images_in_cache": 0}):
        result_cache.clear()
        upscale_step.cached_upscale(src, 2, "Lanczos")
        upscale_step.cached_upscale(src, 2, "Lanczos")
        assert result_cache.size() == 0 and calls[-2:] == ["Lanczos", "Lanczos"]


def test_extension_step_adds_info_and_copies(tmp_path):
    class Mirror(scripts_postprocessing.ScriptPostprocessing):
        name = "Mirror copy"
        order = 5000

        def process(self, pp, enabled=False):
            if enabled:
                pp.info["Mirror copy"] = "Mirror copy"
                pp.extra_images.append(pp.create_copy(pp.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                                      nametags=["mirrored"]))
    steps = runner.ordered_steps([upscale_step.ScriptPostprocessingUpscale, Mirror])
    src = noise(16, 8)
    with shared.opts.override({"use_original_name_batch": True}):
        result = extras_job.run([extras_job.ExtrasInput(src, "cat")],
                                {"Upscale": {"upscale_by": 2, "upscaler_1_name": "Nearest"},
                                 "Mirror copy": {"enabled": True}}, save=True, output_dir=str(tmp_path), steps=steps)
    assert [o.image.size for o in result.outputs] == [(32, 16), (32, 16)]
    assert result.outputs[0].infotext == "Postprocess upscale by: 2, Postprocess upscaler: Nearest, Mirror copy"
    assert np.array_equal(np.asarray(result.outputs[1].image), np.asarray(result.outputs[0].image)[:, ::-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat-mirrored.png", "cat.png"]
    with Image.open(tmp_path / "cat.png") as saved:
        assert saved.info["extras"] == result.outputs[0].infotext


def test_rgba_blend_keeps_alpha():
    src = Image.fromarray(np.dstack([np.asarray(noise(16, 16)), np.full((16, 16), 77, np.uint8)]), "RGBA")
    pp = scripts_postprocessing.PostprocessedImage(src)
    upscale_step.ScriptPostprocessingUpscale().process(pp, upscale_by=2, upscaler_1_name="Lanczos",
                                                        upscaler_2_name="Nearest", upscaler_2_visibility=0.5)
    assert pp.image.mode == "RGBA" and pp.image.size == (32, 32)
    assert pp.info["Postprocess upscaler 2"] == "Nearest"


@pytest.mark.parametrize("kwargs,message", [
    ({"upscaler_1_name": "nope"}, "Upscaler 'nope' not found"),
    ({"upscaler_1_name": "Lanczos", "upscale_by": 0}, "Upscale by must be above 0"),
    ({"upscaler_1_name": "Lanczos", "upscaler_2_name": "Nearest", "upscaler_2_visibility": 3}, "between 0 and 1"),
])
def test_upscale_step_errors(kwargs, message):
    pp = scripts_postprocessing.PostprocessedImage(noise(8, 8))
    with pytest.raises(ValueError, match=message):
        upscale_step.ScriptPostprocessingUpscale().process(pp, **kwargs)


def test_directory_inputs_natural_order_and_skips(tmp_path):
    for name in ("img10.png", "img2.png", ".hidden.png"):
        noise(8, 8).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    inputs = extras_job.directory_inputs(str(tmp_path))
    assert [i.name for i in inputs] == ["img2", "img10"]
    with pytest.raises(ValueError, match="Input directory not found"):
        extras_job.directory_inputs(str(tmp_path / "absent"))


def test_extras_tab_handler_batch_process_and_directory(tmp_path, webui_session):
    from modules.ui import extras as extras_ui
    for name in ("b.png", "a.png"):
        noise(10, 6).save(tmp_path / name)
    steps = runner.ordered_steps([upscale_step.ScriptPostprocessingUpscale])
    controls = [("Upscale", ["upscale_by", "upscaler_1_name"])]
    run = extras_ui.make_run(steps, controls)
    out_dir = tmp_path / "out"
    shown, text, html_text = run(1, None, [str(tmp_path / "b.png"), str(tmp_path / "a.png")], "", "", True, 2, "Nearest")
    assert [image.size for image in shown] == [(16, 8), (16, 8)]
    assert text == "Postprocess upscale by: 2, Postprocess upscaler: Nearest" and html_text == f"<p>{text}</p>"
    shown, _, _ = run(2, None, None, str(tmp_path), str(out_dir), False, 2, "Nearest")
    assert shown == [] and sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.png"]
    shown, _, error = run(0, None, None, "", "", True, 2, "Nearest")
    assert shown == [] and "image not selected" in error
