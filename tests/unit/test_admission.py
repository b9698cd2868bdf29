"""Admission control: the peak-memory estimate, the refusal message, the limit flag, and an
out-of-memory error inside a job that frees the cache and leaves the queue serving."""
import pytest
import torch

from modules import admission, processing, sd_models
from modules.admission import GIB, Limit


def job(**kwargs):
    fields = dict(prompt="x", steps=2, width=64, height=64, seed=1, sampler_name="Euler",
                  do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    return processing.StableDiffusionProcessingTxt2Img(**fields)


@pytest.fixture(scope="module")
def sd1(webui_session):
    info = sd_models.find_checkpoint("tiny-sd1")
    return webui_session.job_queue.run(lambda: webui_session.model_holder.switch_to(info))


def test_estimate_follows_the_documented_formula(sd1):
    # tiny SD1: UNet first block 16 channels, VAE first block 8, float32 on the CPU
    p = job(batch_size=3, width=128, height=64)
    found = admission.estimate(p, sd1)
    unet = 2 * admission.K_UNET * 16 * (128 * 64 / 64) * 4
    vae = admission.K_VAE * 8 * 128 * 64 * 4
    host = admission.K_HOST * 128 * 64
    assert found.device_bytes == int(3 * (max(unet, vae) + host)) and found.host_bytes == 0
    assert found.stage == "VAE, first pass at 128x64"
    # linear in the batch: twice the images, twice the memory
    assert admission.estimate(job(batch_size=6, width=128, height=64), sd1).device_bytes == pytest.approx(
        2 * found.device_bytes, abs=2)


def test_hires_adds_its_pass_and_the_message_says_what_to_lower(sd1):
    p = job(enable_hr=True, hr_scale=4, hr_upscaler="Latent", batch_size=2)
    p.hr_target = processing.hires.hires_target(64, 64, 4, 0, 0)
    found = admission.estimate(p, sd1)
    assert found.stage == "VAE, hires pass at 256x256"
    limit = Limit(found.device_bytes - 1, found.device_bytes - 1, "a test limit")
    with pytest.raises(admission.JobTooLarge) as refused:
        admission.check(p, sd1, limit)
    message = str(refused.value)
    assert "(VAE, hires pass at 256x256, batch_size 2)" in message and "a test limit" in message
    assert "about 1 fit" in message and "lower the hires upscale" in message
    assert admission.check(p, sd1, Limit(found.device_bytes, found.device_bytes, "enough")) == found
    assert admission.check(p, sd1, Limit(None, None, "no limit")) == found


def test_limit_from_the_flag_or_free_memory(webui_session):
    config = webui_session.device_config
    assert admission.measure_limit(config, 1.5) == Limit(int(1.5 * GIB), int(1.5 * GIB), "--job-memory-limit 1.5")
    assert admission.measure_limit(config, 0).device_bytes is None
    import psutil
    free = admission.measure_limit(config, None)
    assert free.device_bytes == pytest.approx(psutil.virtual_memory().available, rel=0.2)


def test_out_of_memory_inside_a_job_frees_memory_and_the_queue_serves_on(webui_session, sd1, monkeypatch):
    freed = []
    monkeypatch.setattr(admission, "free_device_memory", lambda: freed.append(True))
    real_run_pass = processing.run_pass

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (fake)")

    monkeypatch.setattr(processing, "run_pass", out_of_memory)
    p = job()
    with pytest.raises(admission.JobOutOfMemory) as failed:
        webui_session.job_queue.run(lambda: processing.process_images(p))
    assert str(failed.value).startswith("Out of memory: CUDA out of memory. Tried to allocate 20.00 GiB (fake).")
    assert "--medvram" in str(failed.value) and freed == [True]
    assert isinstance(failed.value, processing.GenerationError)  # the UI shows it as a message
    monkeypatch.setattr(processing, "run_pass", real_run_pass)
    processed = webui_session.job_queue.run(lambda: processing.process_images(job()))
    assert len(processed.images) == 1


def test_other_errors_pass_the_guard_unchanged():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with admission.out_of_memory_guard():
            raise RuntimeError("shape mismatch")
    with pytest.raises(admission.JobOutOfMemory):
        with admission.out_of_memory_guard():
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 1099511627776 bytes")
    with admission.out_of_memory_guard():
        pass
