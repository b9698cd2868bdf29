"""img2img-only built-in scripts (Loopback, SD upscale, Poor man's outpainting, Outpainting mk2)
through the Script API, against references computed here: the hand-driven chain of single
generations, the tile count and output size, the canvas size and the untouched original pixels."""
import math

import numpy as np
import pytest
from PIL import Image

from modules import images, processing, scripts, sd_models

BASE = dict(prompt="a lighthouse", negative_prompt="", steps=3, width=64, height=64, seed=21, cfg_scale=5.0,
            sampler_name="Euler", denoising_strength=0.6, do_not_save_samples=True, do_not_save_grid=True)


@pytest.fixture(scope="module")
def shared(webui_session):
    from modules.extension_loading import startup
    startup.setup_scripts_without_ui()
    info = sd_models.find_checkpoint("tiny-sd1")
    webui_session.job_queue.run(lambda: webui_session.model_holder.switch_to(info))
    return webui_session


@pytest.fixture(scope="module")
def picture():
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def make_p(picture, **fields):
    return processing.StableDiffusionProcessingImg2Img(**{**BASE, "init_images": [picture], **fields})


def run_script(shared, title, args, picture, **fields):
    runner = scripts.scripts_img2img
    script = runner.script(title)
    p = make_p(picture, **fields)
    full = runner.default_args()
    full[0] = runner.selectable_scripts.index(script) + 1
    full[script.args_from:script.args_from + len(args)] = list(args)
    p.scripts, p.script_args = runner, full
    return shared.job_queue.run(lambda: scripts.process_with_scripts(p))


def single(shared, picture, **fields):
    p = make_p(picture, **fields)
    return shared.job_queue.run(lambda: processing.process_images(p)).images[0]


def test_img2img_scripts_have_a1111_titles_and_arguments(shared):
    runner = scripts.scripts_img2img
    assert {"Loopback", "Outpainting mk2", "Poor man's outpainting", "SD upscale"} <= set(runner.titles)
    assert "Loopback" not in scripts.scripts_txt2img.titles  # img2img only
    labels = {title: [getattr(c, "label", None) for c in runner.script(title).controls]
              for title in ("Loopback", "SD upscale", "Poor man's outpainting", "Outpainting mk2")}
    assert labels["Loopback"] == ["Loops", "Final denoising strength", "Denoising strength curve",
                                  "Append interrogated prompt at each iteration"]
    assert labels["SD upscale"][1:] == ["Tile overlap", "Upscaler", "Scale Factor"]
    assert labels["Poor man's outpainting"] == ["Pixels to expand", "Mask blur", "Masked content",
                                                "Outpainting direction"]
    assert labels["Outpainting mk2"][1:] == ["Pixels to expand", "Mask blur", "Outpainting direction",
                                             "Fall-off exponent (lower=higher detail)", "Color variation"]
    defaults = runner.default_args()
    loop = runner.script("loopback")
    assert defaults[loop.args_from:loop.args_to] == [4, 0.5, "Linear", "None"]
    mk2 = runner.script("outpainting mk2")
    assert defaults[mk2.args_from + 1:mk2.args_to] == [128, 8, ["left", "right", "up", "down"], 1.0, 0.05]


def test_loopback_equals_the_hand_driven_chain(shared, picture):
    processed = run_script(shared, "Loopback", [3, 0.3, "Linear", "None"], picture)
    grid, loops = processed.images[0], processed.images[1:]
    assert len(loops) == 3 and grid.size == (3 * 64, 64)
    # reference: strength 0.6 → 0.45 → 0.3 (linear), seed + 1 per loop, each output the next input
    image, expected = picture, []
    for i, strength in enumerate([0.6, 0.6 + (0.3 - 0.6) * 0.5, 0.3]):
        image = single(shared, image, seed=21 + i, denoising_strength=strength)
        expected.append(image)
    for got, want in zip(loops, expected):
        assert np.array_equal(np.asarray(got), np.asarray(want))
    info = processed.infotexts[1]
    assert "Final denoising strength: 0.3" in info and "Denoising curve: Linear" in info
    assert "Seed: 21," in info


def test_loopback_curves():
    from importlib import import_module
    loopback = import_module(type(scripts.scripts_img2img.script("loopback")).__module__)
    assert loopback.denoising_strength(0, 5, 0.8, 0.2, "Linear") == 0.8
    assert loopback.denoising_strength(2, 5, 0.8, 0.2, "Aggressive") == pytest.approx(0.8 - 0.6 * math.sin(math.pi / 4))
    assert loopback.denoising_strength(2, 5, 0.8, 0.2, "Lazy") == pytest.approx(0.8 - 0.6 * (1 - math.cos(math.pi / 4)))
    assert loopback.denoising_strength(4, 5, 0.8, 0.2, "Lazy") == pytest.approx(0.2)


def test_sd_upscale_tiles_and_output_size(shared, picture, monkeypatch):
    calls = []
    real = processing.process_images

    def counting(p):
        calls.append([image.size for image in p.init_images])
        return real(p)
    monkeypatch.setattr(processing, "process_images", counting)
    processed = run_script(shared, "SD upscale", ["", 16, "Lanczos", 2.0], picture, batch_size=1)
    assert len(processed.images) == 1 and processed.images[0].size == (128, 128)
    # 128 px with 64 px tiles overlapping by 16: ceil((128-16)/48) = 3 tiles a side
    assert len(calls) == 9 and all(sizes == [(64, 64)] for sizes in calls)
    assert "SD upscale overlap: 16" in processed.info and "SD upscale upscaler: Lanczos" in processed.info


def test_sd_upscale_tile_of_a_single_tile_is_the_img2img_of_the_upscaled_image(shared, picture):
    # scale 1 with the tile as large as the image: one tile, equal to a plain img2img of the image
    processed = run_script(shared, "SD upscale", ["", 0, "None", 1.0], picture)
    assert np.array_equal(np.asarray(processed.images[0]), np.asarray(single(shared, picture)))


def test_split_and_combine_grid_round_trip():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (100, 150, 3), dtype=np.uint8))
    grid = images.split_grid(image, 64, 64, 16)
    assert [y for y, _h, _row in grid.tiles] == [0, 36] and [x for x, _w, _t in grid.tiles[0][2]] == [0, 43, 86]
    assert np.array_equal(np.asarray(images.combine_grid(grid)), np.asarray(image))
    for _y, _h, row in grid.tiles:  # all-white tiles blend to white everywhere
        for tile in row:
            tile[2] = Image.new("RGB", (64, 64), "white")
    assert (np.asarray(images.combine_grid(grid)) == 255).all()


def _unexpanded_pixels_equal(result, picture, left, top, margin):
    inner = np.asarray(result)[top + margin:top + picture.height - margin, left + margin:left + picture.width - margin]
    original = np.asarray(picture)[margin:picture.height - margin, margin:picture.width - margin]
    return np.array_equal(inner, original)


def test_poor_mans_outpainting_canvas_and_untouched_original(shared, picture):
    # mask blur 0: the original's area is exactly the unmasked area, so every one of its pixels stays
    processed = run_script(shared, "Poor man's outpainting", [32, 0, "fill", ["left", "down"]], picture)
    (result,) = processed.images
    # 64 + 32 rounds up to 128 on each expanded axis; the whole extra goes to the one chosen side
    assert result.size == (128, 128)
    assert _unexpanded_pixels_equal(result, picture, left=64, top=0, margin=0)
    assert not np.array_equal(np.asarray(result)[64:, :64], np.zeros((64, 64, 3)))  # the new area was painted


def test_outpainting_mk2_canvas_and_untouched_original(shared, picture):
    processed = run_script(shared, "Outpainting mk2", ["", 32, 0, ["right"], 1.0, 0.05], picture)
    (result,) = processed.images  # one image: no grid (grid_only_if_multiple)
    assert result.size == (128, 64)
    assert _unexpanded_pixels_equal(result, picture, left=0, top=0, margin=0)


def test_bad_arguments_are_clear_errors(shared, picture):
    with pytest.raises(processing.GenerationError, match="unknown upscaler 'nope'"):
        run_script(shared, "SD upscale", ["", 16, "nope", 2.0], picture)
    with pytest.raises(processing.GenerationError, match="denoising_curve"):
        run_script(shared, "Loopback", [2, 0.5, "Wavy", "None"], picture)
