"""txt2img end to end in-process on tiny checkpoints of every family, through the real loader."""
import numpy as np
import pytest
import torch

from modules import processing, sd_models
from modules.models.loader import ModelLoadError, load_checkpoint
from modules.sampling_pass import run_pass

PROMPT, NEGATIVE = "a photograph of an astronaut riding a horse", "blurry"


def run(shared, **kwargs):
    fields = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=4, width=64, height=64, seed=1234,
                  cfg_scale=7.0, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    return shared.job_queue.run(lambda: processing.process_images(p)), p


def use(shared, family):
    info = sd_models.find_checkpoint(f"tiny-{family}")
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


def pixels(processed):
    return np.stack([np.asarray(image) for image in processed.images])


def _hand_sigmas(alphas_cumprod: torch.Tensor, steps: int) -> torch.Tensor:
    """A1111's default Euler schedule written out: σ at t = linspace(999, 0, n), log-σ interpolated."""
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log()
    t = torch.linspace(999, 0, steps)
    low, frac = t.floor().long(), t - t.floor()
    high = t.ceil().long()
    sigmas = ((1 - frac) * log_sigmas[low] + frac * log_sigmas[high]).exp()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _hand_t(alphas_cumprod: torch.Tensor, sigma: float) -> torch.Tensor:
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log()
    log_sigma = torch.tensor(sigma).log()
    lo = int(torch.clamp((log_sigmas <= log_sigma).sum() - 1, 0, len(log_sigmas) - 2))
    w = ((log_sigmas[lo] - log_sigma) / (log_sigmas[lo] - log_sigmas[lo + 1])).clamp(0, 1)
    return (1 - w) * lo + w * (lo + 1)


@torch.no_grad()
def test_txt2img_equals_hand_driven_diffusers_loop(webui_session, data_dir):
    shared = webui_session
    steps, seed, cfg = 5, 4321, 6.5
    use(shared, "sd1")
    processed, p = run(shared, steps=steps, seed=seed, cfg_scale=cfg)

    # the same components, loaded again, driven by hand
    m = load_checkpoint(str(data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"))
    tok, enc = m.tokenizers[0], m.text_encoders[0]

    def embed(text):
        ids = tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return enc(ids)[0]

    cond, uncond = embed(PROMPT), embed(NEGATIVE)
    sigmas = _hand_sigmas(m.alphas_cumprod, steps)
    generator = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn((1, 4, 8, 8), generator=generator) * sigmas[0]
    for i in range(steps):
        sigma = float(sigmas[i])
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        t = _hand_t(m.alphas_cumprod, sigma)
        eps_c = m.unet(x * c_in, t, encoder_hidden_states=cond).sample
        eps_u = m.unet(x * c_in, t, encoder_hidden_states=uncond).sample
        den_c, den_u = x - eps_c * sigma, x - eps_u * sigma
        denoised = den_u + (den_c - den_u) * cfg
        x = x + (x - denoised) / sigma * (float(sigmas[i + 1]) - sigma)
    image = ((m.vae.decode(x / m.vae_scaling_factor).sample + 1) / 2).clamp(0, 1)
    expected = image[0].permute(1, 2, 0).numpy() * 255

    ours = pixels(processed)[0].astype(np.float64)
    # our output is 8-bit: every pixel is the rounded reference value
    assert np.abs(ours - expected).max() <= 0.5 + 1e-4 * 255

    # and the latents agree to 1e-4 before quantisation
    model = shared.model_holder.sd_model
    latents = shared.job_queue.run(lambda: run_pass(p, model, processing._first_pass(p, [PROMPT], [NEGATIVE]),
                                                    [seed], [0]))
    assert torch.allclose(latents, x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["sd1", "sd1-inpaint", "sd2-v", "sdxl"])
def test_every_family_generates_deterministically(webui_session, family):
    shared = webui_session
    model = use(shared, family)
    assert model.is_sdxl == (family == "sdxl")
    assert model.is_inpainting == (family == "sd1-inpaint")
    assert model.parameterization == ("v" if family == "sd2-v" else "eps")
    first, _ = run(shared, batch_size=2, n_iter=1, steps=3)
    again, _ = run(shared, batch_size=2, n_iter=1, steps=3)
    assert len(first.images) == 2 and first.images[0].size == (64, 64)
    assert np.array_equal(pixels(first), pixels(again))
    assert first.all_seeds == [1234, 1235]
    assert not np.array_equal(pixels(first)[0], pixels(first)[1])


def test_batch_image_equals_single_generation_with_its_seed(webui_session):
    shared = webui_session
    use(shared, "sd1")
    batch, _ = run(shared, batch_size=2, n_iter=2, steps=3, seed=10)
    assert batch.all_seeds == [10, 11, 12, 13]
    single, _ = run(shared, steps=3, seed=13)
    # same noise; only float rounding of batched kernels may move a pixel by one level
    diff = np.abs(pixels(batch)[3].astype(int) - pixels(single)[0].astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05


def test_infotext_of_generated_image(webui_session):
    shared = webui_session
    model = use(shared, "sd1")
    processed, _ = run(shared, steps=3, seed=77)
    info = model.sd_checkpoint_info
    assert processed.infotexts[0] == (
        f"{PROMPT}\nNegative prompt: {NEGATIVE}\nSteps: 3, Sampler: Euler, Schedule type: Automatic, "
        f"CFG scale: 7.0, Seed: 77, Size: 64x64, Model hash: {info.shorthash}, Model: tiny-sd1, "
        f"Version: v1.10.1-sdwebui-0.1.0")


def test_saved_png_carries_infotext(webui_session, data_dir):
    from PIL import Image
    shared = webui_session
    use(shared, "sd1")
    processed, _ = run(shared, steps=2, seed=5, do_not_save_samples=False)
    day_folders = list((data_dir / "outputs" / "txt2img-images").iterdir())
    files = sorted(day_folders[0].glob("*-5.png"))
    assert files, "the image was not saved as NNNNN-<seed>.png"
    with Image.open(files[-1]) as saved:
        assert saved.info["parameters"] == processed.infotexts[0]
    assert (data_dir / "params.txt").read_text() == processed.infotexts[0]


def test_corrupt_checkpoint_is_refused_and_old_model_stays(webui_session, data_dir):
    shared = webui_session
    use(shared, "sd1")
    folder = data_dir / "models" / "Stable-diffusion"
    broken = folder / "broken.safetensors"
    good = (folder / "tiny-sd1.safetensors").read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # truncated download
    try:
        shared.job_queue.run(sd_models.list_models)
        info = sd_models.find_checkpoint("broken")
        with pytest.raises(ModelLoadError, match="broken.safetensors"):
            shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
        assert shared.model_holder.sd_model.sd_checkpoint_info.name_for_extra == "tiny-sd1"
        processed, _ = run(shared, steps=2)
        assert len(processed.images) == 1
    finally:
        broken.unlink()
        shared.job_queue.run(sd_models.list_models)


def test_override_settings_apply_for_one_job_only(webui_session):
    shared = webui_session
    use(shared, "sd1")
    processed, _ = run(shared, steps=2, override_settings={"sd_model_checkpoint": "tiny-sd2-v",
                                                           "CLIP_stop_at_last_layers": 2})
    assert "Model: tiny-sd2-v" in processed.infotexts[0] and "Clip skip: 2" in processed.infotexts[0]
    assert shared.opts.CLIP_stop_at_last_layers == 1
    after, _ = run(shared, steps=2)
    assert "Clip skip" not in after.infotexts[0]


def test_no_model_message_names_the_folder(webui_session, monkeypatch):
    holder = sd_models.ModelHolder()
    monkeypatch.setattr(sd_models, "checkpoints_list", {})
    with pytest.raises(sd_models.NoModelError, match="models/Stable-diffusion"):
        holder.ensure_for_job()


def test_euler_a_with_eta_and_ensd_in_infotext(webui_session):
    shared = webui_session
    use(shared, "sd1")
    a, _ = run(shared, sampler_name="k_euler_a", steps=3, seed=3, eta=0.5,
               override_settings={"eta_noise_seed_delta": 31337})
    assert "Sampler: Euler a, Schedule type: Automatic" in a.infotexts[0]
    assert "ENSD: 31337" in a.infotexts[0] and "Eta: 0.5" in a.infotexts[0]
    b, _ = run(shared, sampler_name="Euler a", steps=3, seed=3, eta=0.5)
    assert not np.array_equal(pixels(a), pixels(b))  # ENSD reseeds the ancestral noise
    c, _ = run(shared, sampler_name="Euler a", steps=3, seed=3, eta=0.5)
    assert np.array_equal(pixels(b), pixels(c))


def test_tiling_makes_the_vae_wrap_around_and_is_restored(webui_session):
    shared = webui_session
    model = use(shared, "sd1")
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def decoded_shift_error():
        plain = processing.decode_latents(model, latent)
        shifted = processing.decode_latents(model, torch.roll(latent, 1, dims=-1))
        return (torch.roll(plain, 8, dims=-1) - shifted).abs().max().item()

    with processing.seamless_tiling(model, True):
        assert decoded_shift_error() < 1e-4  # circular convs: shifting the latent shifts the image
    assert decoded_shift_error() > 1e-3      # zero padding shows the seam
    assert all(m.padding_mode == "zeros" for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d))
    tiled, _ = run(shared, steps=2, tiling=True)
    assert "Tiling: True" in tiled.infotexts[0]


@pytest.mark.parametrize("sampler", [s.name for s in __import__("modules.sd_samplers").sd_samplers.all_samplers])
def test_every_sampler_gives_a_finite_image(webui_session, sampler):
    shared = webui_session
    use(shared, "sd1")
    processed, _ = run(shared, sampler_name=sampler, steps=4, seed=2)
    image = pixels(processed)[0]
    assert image.std() > 0  # not a blank (NaN-turned-black) picture
    assert f"Sampler: {sampler}, " in processed.infotexts[0]


@pytest.mark.parametrize("sampler,scheduler,label", [
    ("DPM++ 2M", None, "Karras"), ("Euler", "Karras", "Karras"), ("Euler a", "Exponential", "Exponential"),
    ("DPM++ SDE", "Beta", "Beta"), ("Heun", "SGM Uniform", "SGM Uniform"), ("Euler", "Align Your Steps", "Align Your Steps"),
])
def test_schedules_are_applied_and_recorded(webui_session, sampler, scheduler, label):
    shared = webui_session
    use(shared, "sd1")
    a, _ = run(shared, sampler_name=sampler, scheduler=scheduler, steps=4, seed=2)
    assert f"Sampler: {sampler}, Schedule type: {label}, " in a.infotexts[0]
    b, _ = run(shared, sampler_name=sampler, scheduler=scheduler, steps=4, seed=2)
    assert np.array_equal(pixels(a), pixels(b))  # Brownian and ancestral noise are seeded too


def test_vae_nan_in_half_precision_is_retried_in_float32(webui_session, monkeypatch):
    shared = webui_session
    model = use(shared, "sd1")
    real_decode = model.vae.decode

    def half_overflows(z, **kwargs):  # what an fp16 SD VAE does on some images
        if next(model.vae.parameters()).dtype == torch.float16:
            return (torch.full((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), float("nan")),)
        return real_decode(z, **kwargs)

    monkeypatch.setattr(model.vae, "decode", half_overflows)
    model.vae.to(torch.float16)
    try:
        processed, _ = run(shared, steps=2)
        assert next(model.vae.parameters()).dtype == torch.float32  # stays upcast
        assert "VAE precision: float32" in processed.infotexts[0]
        assert "decoded in float32" in processed.comments
        assert pixels(processed)[0].std() > 0
    finally:
        model.vae.to(torch.float32)


@pytest.mark.parametrize("watched", [True, False])
def test_live_previews_are_rendered_only_while_someone_watches(webui_session, monkeypatch, watched):
    from modules import previews, state as state_module
    shared = webui_session
    use(shared, "sd1")
    rendered = []
    real_preview = previews.preview
    monkeypatch.setattr(previews, "preview", lambda *a: rendered.append(shared.state.sampling_step) or real_preview(*a))
    monkeypatch.setattr(shared.state, "_preview_wanted_at", -float("inf"))
    if watched:
        shared.state.want_preview()  # what the UI watcher and GET /progress do
    run(shared, steps=6, override_settings={"show_progress_every_n_steps": 2, "live_previews_enable": True})
    assert rendered == ([2, 4, 6] if watched else [])
    assert state_module.PREVIEW_INTEREST_SECONDS >= 1  # a poll every second keeps them coming


def test_noise_table_settings_change_the_schedule_and_are_recorded(webui_session):
    from types import SimpleNamespace
    shared = webui_session
    model = use(shared, "sd1")
    plain, _ = run(shared, steps=3, seed=5, sampler_name="Euler a")
    assert "Downcast alphas_cumprod" not in plain.infotexts[0] and "Noise Schedule" not in plain.infotexts[0]

    downcast, _ = run(shared, steps=3, seed=5, sampler_name="Euler a",
                      override_settings={"use_downcasted_alpha_bar": True})
    assert "Downcast alphas_cumprod: True" in downcast.infotexts[0]
    assert not np.array_equal(pixels(plain), pixels(downcast))
    table = model.noise_schedule(SimpleNamespace(use_downcasted_alpha_bar=True, sd_noise_schedule="Default"))
    assert torch.equal(table.alphas_cumprod, model.alphas_cumprod.half().float())

    ztsnr, _ = run(shared, steps=3, seed=5, sampler_name="Euler a",
                   override_settings={"sd_noise_schedule": "Zero Terminal SNR"})
    assert "Noise Schedule: Zero Terminal SNR" in ztsnr.infotexts[0]
    table = model.noise_schedule(SimpleNamespace(use_downcasted_alpha_bar=False, sd_noise_schedule="Zero Terminal SNR"))
    assert float(table.sigma_max) == pytest.approx(4518.8, rel=1e-4)  # generation.md §0.1
    # the settings are per job: the next plain job is the first one again
    again, _ = run(shared, steps=3, seed=5, sampler_name="Euler a")
    assert np.array_equal(pixels(plain), pixels(again))


def test_sigma_to_t_memo_gives_the_computed_values():
    from modules.noise_schedule import DiscreteSchedule
    schedule = DiscreteSchedule.scaled_linear()
    sigma = torch.tensor([3.5, 3.5])
    first = schedule.sigma_to_t(sigma)
    first += 1  # callers may modify what they get: the memo hands out copies
    assert torch.equal(schedule.sigma_to_t(sigma), schedule._sigma_to_t(sigma))
    assert torch.equal(schedule.sigma_to_t(torch.tensor(0.5)), schedule._sigma_to_t(torch.tensor(0.5)))
