"""ControlNet `inpaint_only+lama` (controlnet.md §3.8): a random-weight LaMa file read through the real
path (spandrel), its fill checked against the network called directly, and one tiny txt2img job whose
first latent is q_sample(z_lama, 999, noise) and whose pixels outside the grown mask are the hint's."""
import dataclasses
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from modules import noise_schedule, processing, sd_models, sd_samplers
from modules.controlnet import hint as hints
from modules.controlnet import inpaint_only, job, lama, preprocessors, units
from tests.controlnet_models import write_random_lama, write_tiny_controlnets


def lama_path(data_dir):
    return data_dir / "models" / "ControlNetPreprocessor" / "lama" / "ControlNetLama.pth"


def lama_unit(colour, mask, **fields):
    return units.ControlNetUnit(enabled=True, module="inpaint_only+lama", model="tiny_sd15_canny",
                                image=Image.fromarray(colour), mask=Image.fromarray(mask), **fields)


def test_missing_lama_file_names_file_and_folder(webui_session, data_dir):
    """Runs before the fixture below writes the file."""
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    assert not lama_path(data_dir).exists()
    pre = preprocessors.find("inpaint_only+lama")
    assert not preprocessors.available(pre)
    folder = os.path.join(str(data_dir / "models" / "ControlNetPreprocessor"), "lama")
    mask = np.zeros((64, 64), dtype=np.uint8)
    unit = lama_unit(np.zeros((64, 64, 3), dtype=np.uint8), mask)
    with pytest.raises(job.ControlNetError) as error:
        job.check_units([unit])
    message = str(error.value)
    assert message.startswith("ControlNet unit 0: Preprocessor 'inpaint_only+lama' needs ControlNetLama.pth")
    assert message.endswith(f"needs ControlNetLama.pth in {folder}; downloads are disabled")


@pytest.fixture(scope="module")
def lama_net(webui_session, data_dir):
    """The weight file in models/ControlNetPreprocessor/lama, loaded as the job loads it; removed
    afterwards so that other tests see the preprocessor without its weights."""
    path = lama_path(data_dir)
    write_random_lama(path, seed=1)
    yield lama.load(str(path), torch.device("cpu"))
    path.unlink()


def test_the_file_is_detected_as_lama(lama_net):
    assert type(lama_net).__name__ == "LaMa"
    assert preprocessors.available(preprocessors.find("inpaint_only+lama"))


def test_fill_keeps_the_outside_and_takes_the_hole_from_the_net(lama_net):
    """An 64x32 image fitted to 64x64 with Resize and Fill: its padding joins the hole. LaMa at 256 px
    (short side 256, no padding needed here), resized back with area shrinking."""
    rng = np.random.default_rng(0)
    small = np.dstack([rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), np.zeros((32, 64), dtype=np.uint8)])
    small[10:20, 24:40, 3] = 255
    fitted = hints.fit(small, 64, 64, "Resize and Fill")
    hole = fitted[:, :, 3] > 127
    assert hole[:16].all() and hole[48:].all() and hole[26:36, 24:40].all()
    assert hole.sum() == 2 * 16 * 64 + 10 * 16

    filled = lama.fill(lama_net, fitted)

    assert np.array_equal(filled[~hole], fitted[~hole])  # outside: the input, mask channel included
    assert np.array_equal(filled[:, :, 3], fitted[:, :, 3])
    big = cv2.resize(fitted[:, :, :3], (256, 256), interpolation=cv2.INTER_CUBIC)
    big_hole = cv2.resize(fitted[:, :, 3], (256, 256), interpolation=cv2.INTER_CUBIC) > 127
    with torch.no_grad():
        out = lama_net(torch.from_numpy(big / 255.0).float().permute(2, 0, 1)[None],
                       torch.from_numpy(big_hole).float()[None, None])
    painted = (out[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    expected = cv2.resize(painted, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(filled[:, :, :3][hole], expected[hole])
    assert not np.array_equal(filled[hole], fitted[hole])  # the net did paint something


def test_txt2img_starts_from_q_sample_of_the_lama_latent(webui_session, data_dir, lama_net, monkeypatch):
    shared = webui_session
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    info = sd_models.find_checkpoint("tiny-sd1")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    colour = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[24:40, 20:44] = 255
    calls = []
    real = sd_samplers.run_sampler

    def recording(sampler, denoiser, x, sigmas, *args, **kwargs):
        calls.append((x.clone(), sigmas.clone()))
        return real(sampler, denoiser, x, sigmas, *args, **kwargs)

    monkeypatch.setattr(sd_samplers, "run_sampler", recording)

    def generate(module):
        unit = dataclasses.replace(lama_unit(colour, mask), module=module)
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a cat", steps=3, width=64, height=64, seed=5, cfg_scale=5.0, sampler_name="Euler",
            do_not_save_samples=True, do_not_save_grid=True, controlnet_units=[unit])
        processed = shared.job_queue.run(lambda: processing.process_images(p))
        return np.asarray(processed.images[0]), p

    plain, _ = generate("inpaint_only")
    out, p = generate("inpaint_only+lama")
    (x_plain, sigmas), (x_lama, _) = calls
    noise = x_plain / sigmas[0]  # Euler starts from noise·σ₀

    filled = lama.fill(lama_net, np.dstack([colour, mask]))
    model = p.sd_model
    with torch.no_grad():
        pixels = torch.from_numpy(filled[:, :, :3] / 255.0).float().permute(2, 0, 1)[None] * 2 - 1
        z_lama = model.vae.encode(pixels).latent_dist.mode() * model.vae_scaling_factor
    a = noise_schedule.scaled_linear_alphas_cumprod()[999]
    q_sample = a.sqrt() * z_lama + (1 - a).sqrt() * noise
    assert torch.allclose(x_lama * a.sqrt(), q_sample, atol=1e-5)  # the UNet's input at t = 999
    assert torch.allclose(p.controlnet_hook.units[0].inpaint_only["first"].z0, z_lama, atol=1e-5)

    # then exactly inpaint_only: outside the mask grown by 3 + 3 pixels the image is the hint's
    kept = inpaint_only.blend_mask(mask, 7) == 0
    assert kept.sum() == 64 * 64 - (16 + 12) * (24 + 12)
    assert np.array_equal(out[kept], colour[kept])
    assert np.array_equal(plain[kept], colour[kept])
    inside = inpaint_only.blend_mask(mask, 7) == 1
    assert not np.array_equal(out[inside], plain[inside])  # another start: another fill


def test_hook_starts_only_the_first_pass_of_a_lama_unit_that_runs_there():
    from modules.controlnet.residuals import ControlHook, PreparedUnit
    z0 = torch.full((1, 4, 2, 2), 2.0)
    target = inpaint_only.InpaintOnlyTarget(z0=z0, latent_mask=torch.zeros(1, 1, 2, 2),
                                            colour=torch.zeros(1, 3, 16, 16), blend_mask=torch.zeros(1, 1, 16, 16))
    noise = torch.ones(2, 4, 2, 2)
    table = noise_schedule.scaled_linear_alphas_cumprod()
    sigma = ((1 - table[999]) / table[999]).sqrt()

    def hook(hr_option="Both", start_from_hint=True, hires=True):
        unit = PreparedUnit(0, None, 1.0, 0.0, 1.0, "Balanced", hr_option, {"first": None, "hires": None},
                            {"first": target, "hires": target}, start_from_hint=start_from_hint)
        return ControlHook([unit], hires_enabled=hires)

    h = hook()
    h.begin_pass(3, hires=False)
    assert torch.allclose(h.initial_latent(noise, table), z0 + sigma * noise)  # z + σ₉₉₉·ε in k-diffusion scale
    h.begin_pass(3, hires=True)
    assert h.initial_latent(noise, table) is None
    only_hires = hook(hr_option="High res only")
    only_hires.begin_pass(3, hires=False)
    assert only_hires.initial_latent(noise, table) is None
    plain = hook(start_from_hint=False)
    plain.begin_pass(3, hires=False)
    assert plain.initial_latent(noise, table) is None
