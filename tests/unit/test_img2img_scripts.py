"""img2img-only built-in scripts (Loopback, SD upscale, Poor man's outpainting, Outpainting mk2)
through the Script API, against references computed here: the hand-driven chain of single
generations, the tile count and output size, the canvas size and the untouched original pixels."""
import math

import numpy as np
import torch
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


ALT = "img2img alternative test"
ALT_ARGS = dict(override_sampler=True, override_prompt=True, original_prompt="a lighthouse at dusk",
                original_negative_prompt="fog", override_steps=True, st=4, override_strength=True, cfg=1.5,
                randomness=0.0, sigma_adjustment=False)


def _alt_args(**changes):
    return [""] + list({**ALT_ARGS, **changes}.values())


def _reference_found_noise(model, init_latent, prompt, negative, cfg_scale, steps):
    """The backward Euler search written out here on the model's ε prediction: climb from σ = 0 to
    σ_max, each step using the guided slope at the level it climbs to; unit variance at the end."""
    from modules import sampling_pass
    cond, uncond, _ = sampling_pass.get_conds(model, [prompt], [negative], steps)
    context = torch.cat([cond.batch[0][0].schedules[0].cond[None], uncond[0][0].cond[None]])
    schedule = model.noise_schedule(shared_opts())
    sigmas = schedule.get_sigmas(steps).flip(0)
    x = init_latent.clone()
    with torch.no_grad():
        for i in range(1, len(sigmas)):
            s = sigmas[i]
            t = schedule.sigma_to_t(s)
            eps = model.unet(torch.cat([x, x]) / (s ** 2 + 1) ** 0.5, t.expand(2), encoder_hidden_states=context,
                             return_dict=False)[0].float()
            d_cond, d_uncond = (torch.cat([x, x]) - eps * s).chunk(2)
            denoised = d_uncond + (d_cond - d_uncond) * cfg_scale
            x = x + (x - denoised) / s * (sigmas[i] - sigmas[i - 1])
    return x / x.std()


def shared_opts():
    from modules import shared as shared_module
    return shared_module.opts


def _record_sampler_starts(monkeypatch):
    from modules import sd_samplers
    starts, real = [], sd_samplers.run_sampler

    def recording(sampler, denoiser, x, sigmas, *args, **kwargs):
        starts.append((sampler.name, x.clone(), sigmas.clone()))
        return real(sampler, denoiser, x, sigmas, *args, **kwargs)
    monkeypatch.setattr(sd_samplers, "run_sampler", recording)
    return starts


def test_img2img_alternative_test_has_a1111_controls(shared):
    runner = scripts.scripts_img2img
    script = runner.script(ALT)
    assert ALT not in scripts.scripts_txt2img.titles
    labels = [getattr(c, "label", None) for c in script.controls][1:]
    assert labels == ["Override `Sampling method` to Euler?(this method is built for it)",
                      "Override `prompt` to the same value as `original prompt`?(and `negative prompt`)",
                      "Original prompt", "Original negative prompt",
                      "Override `Sampling Steps` to the same value as `Decode steps`?", "Decode steps",
                      "Override `Denoising strength` to 1?", "Decode CFG scale", "Randomness",
                      "Sigma adjustment for finding noise for image"]
    defaults = runner.default_args()[script.args_from + 1:script.args_to]
    assert defaults == [True, True, "", "", True, 50, True, 1.0, 0.0, False]


def test_img2img_alternative_test_starts_from_the_found_noise(shared, picture, monkeypatch):
    starts = _record_sampler_starts(monkeypatch)
    processed = run_script(shared, ALT, _alt_args(), picture, sampler_name="DPM++ 2M", steps=7,
                           denoising_strength=0.5, prompt="ignored", negative_prompt="ignored too")
    (image,) = processed.images
    assert image.size == (64, 64)
    # the options reached the job: Euler, the decode steps, strength 1, the original prompts
    p = processed.p
    assert (p.sampler_name, p.steps, p.denoising_strength) == ("Euler", 4, 1.0)
    assert (p.prompt, p.negative_prompt) == ("a lighthouse at dusk", "fog")
    info = processed.infotexts[0]
    for key in ("Steps: 4,", "Sampler: Euler,", "Denoising strength: 1.0", "Decode prompt: a lighthouse at dusk",
                "Decode negative prompt: fog", "Decode CFG scale: 1.5", "Decode steps: 4", "Randomness: 0.0",
                "Sigma Adjustment: False"):
        assert key in info, key
    (sampler_name, x_start, sigmas), = starts
    model = shared.model_holder.sd_model
    found = _reference_found_noise(model, p.init_latent, "a lighthouse at dusk", "fog", 1.5, 4)
    sigma_max = model.noise_schedule(shared_opts()).sigma_max
    assert sampler_name == "Euler" and len(sigmas) == 5 and float(sigmas[0]) == pytest.approx(float(sigma_max))
    assert torch.allclose(x_start, found * sigma_max, atol=1e-4, rtol=1e-4)


def test_img2img_alternative_test_randomness_and_cache(shared, picture, monkeypatch):
    from modules import rng
    from modules.img2img import noise_inversion
    calls = []
    real = noise_inversion.find_noise
    monkeypatch.setattr(noise_inversion, "find_noise", lambda *a: calls.append(1) or real(*a))
    starts = _record_sampler_starts(monkeypatch)
    for _ in range(2):  # the second run finds the same image and settings: no second search
        run_script(shared, ALT, _alt_args(randomness=1.0, st=3), picture, seed=77)
    assert len(calls) == 1
    # randomness 1: the seed's noise alone, at σ_max
    seed_noise = rng.ImageRNG((4, 8, 8), [77], [0], source=shared_opts().randn_source).first()
    sigma_max = float(starts[0][2][0])
    for _name, x_start, _sigmas in starts:
        assert torch.allclose(x_start, seed_noise * sigma_max, atol=1e-4, rtol=1e-4)
    run_script(shared, ALT, _alt_args(randomness=1.0, st=3, sigma_adjustment=True), picture, seed=77)
    assert len(calls) == 2
    with pytest.raises(processing.GenerationError, match="decode steps must be between 1 and 150"):
        run_script(shared, ALT, _alt_args(st=0), picture)
