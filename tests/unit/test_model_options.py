"""Extensions' attention optimisations (on_list_optimizers) and UNet replacements (on_list_unets):
offered in the Settings dropdowns, applied / undone when chosen, a failing one refused naming its
extension, and an SdUnet's forward used by a tiny SD1 job (per-request override for that job only)."""
import contextlib

import numpy as np
import pytest
import torch

from modules import processing, script_callbacks, sd_hijack, sd_hijack_optimizations, sd_models, sd_unet
from modules.extension_loading import model_options
from modules.options import OptionError
from modules.settings import apply

calls: list = []


class Fast(sd_hijack_optimizations.SdOptimization):
    name, label, priority = "fast-attn", "an extension's", 100

    def apply(self):
        calls.append("fast.apply")

    def undo(self):
        calls.append("fast.undo")


class Missing(sd_hijack_optimizations.SdOptimization):
    name = "missing"

    def is_available(self):
        return False


class Broken(sd_hijack_optimizations.SdOptimization):
    name, priority = "broken", 10

    def apply(self):
        raise RuntimeError("no kernel for this card")

    def undo(self):
        calls.append("broken.undo")


class ZeroUnet(sd_unet.SdUnet):
    """Predicts no noise: the sampler then keeps its (scaled) starting latent."""

    def forward(self, x, timesteps, context, *args, **kwargs):
        calls.append(("forward", tuple(x.shape), tuple(timesteps.shape), tuple(context.shape), sorted(kwargs)))
        return torch.zeros_like(x)

    def activate(self):
        calls.append("unet.activate")

    def deactivate(self):
        calls.append("unet.deactivate")


class Engine(sd_unet.SdUnetOption):
    model_name, label = "tiny-sd1", "[TRT] tiny-sd1"

    def create_unet(self):
        return ZeroUnet()


def _offer_optimizers(res):
    res.extend([Missing(), Fast(), Broken()])


def _offer_unets(res):
    res.append(Engine())


@pytest.fixture(scope="module")
def offered(webui_session):
    shared = webui_session
    info = sd_models.find_checkpoint("tiny-sd1")
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    script_callbacks.on_list_optimizers(_offer_optimizers)
    script_callbacks.on_list_unets(_offer_unets)
    model_options.register(shared.opts)
    yield shared
    for key in ("cross_attention_optimization", "sd_unet"):
        shared.opts.set(key, "Automatic", run_callbacks=False)
    for callback in (_offer_optimizers, _offer_unets):
        script_callbacks.remove_callbacks_for_function(callback)
    model_options.register(shared.opts)
    shared.job_queue.run(lambda: (sd_hijack.apply_optimizations(), sd_unet.apply_unet()))
    shared.opts.save(shared.paths.settings_file)


@contextlib.contextmanager
def _also_offered(shared, option):
    """`option` offered by one more on_list_unets callback for the block, then withdrawn."""
    def offer(res):
        res.append(option)
    script_callbacks.on_list_unets(offer)
    try:
        model_options.register(shared.opts)
        yield
    finally:
        script_callbacks.remove_callbacks_for_function(offer)
        model_options.register(shared.opts)


def _set(shared, key, value):
    return apply.apply_settings(shared.opts, {key: value}, shared.paths.settings_file)


def _choices(shared, key):
    from modules.ui import settings_choices  # noqa: F401 - registers the dropdowns' providers
    return shared.opts.data_labels[key].component_args["choices"]()


def test_the_dropdowns_offer_what_extensions_list(offered):
    assert _choices(offered, "cross_attention_optimization") == \
        ["Automatic", "fast-attn - an extension's", "SDP", "broken", "None"]
    assert _choices(offered, "sd_unet") == ["Automatic", "[TRT] tiny-sd1", "None"]
    with pytest.raises(OptionError, match="cannot take the value 'missing'"):
        offered.opts.validate({"cross_attention_optimization": "missing"})
    with pytest.raises(OptionError, match=r"choose one of Automatic, \[TRT\] tiny-sd1, None"):
        offered.opts.validate({"sd_unet": "[TRT] other"})
    # A1111's own kernels stay valid values (generation.md §17: ignored with a warning)
    assert offered.opts.validate({"cross_attention_optimization": "xformers"}) == \
        {"cross_attention_optimization": "xformers"}


def test_choosing_an_optimization_applies_it_and_switching_back_undoes_it(offered):
    calls.clear()
    _set(offered, "cross_attention_optimization", "fast-attn - an extension's")
    assert calls == ["fast.apply"] and isinstance(sd_hijack.current_optimizer, Fast)
    _set(offered, "cross_attention_optimization", "SDP")
    assert calls == ["fast.apply", "fast.undo"]
    assert isinstance(sd_hijack.current_optimizer, sd_hijack_optimizations.SdOptimizationSdp)
    _set(offered, "cross_attention_optimization", "Automatic")  # the highest priority available
    assert calls == ["fast.apply", "fast.undo", "fast.apply"] and isinstance(sd_hijack.current_optimizer, Fast)


def test_a_raising_apply_is_refused_naming_its_extension_and_the_previous_one_stays(offered):
    _set(offered, "cross_attention_optimization", "fast-attn - an extension's")
    calls.clear()
    with pytest.raises(OptionError) as raised:
        _set(offered, "cross_attention_optimization", "broken")
    message = str(raised.value)
    assert "'broken' (from base/test_model_options.py/list_optimizers)" in message
    assert "RuntimeError: no kernel for this card" in message
    assert "keeping 'fast-attn - an extension's'" in message
    assert calls == ["fast.undo", "broken.undo", "fast.apply"]  # cleaned up, previous back
    assert offered.opts.cross_attention_optimization == "fast-attn - an extension's"
    assert isinstance(sd_hijack.current_optimizer, Fast)


def _job(shared, **overrides):
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt="a tower", steps=3, width=64, height=64, seed=4, sampler_name="Euler", cfg_scale=5,
        do_not_save_samples=True, do_not_save_grid=True, override_settings=overrides)
    return np.asarray(shared.job_queue.run(lambda: processing.process_images(p)).images[0])


def test_the_sd_unet_forward_replaces_the_unet_and_an_override_lasts_one_job(offered):
    _set(offered, "cross_attention_optimization", "SDP")
    _set(offered, "sd_unet", "Automatic")
    calls.clear()
    plain = _job(offered, sd_unet="None")
    assert calls == []
    replaced = _job(offered)  # Automatic: the option whose model_name is the checkpoint's name
    assert calls[0] == "unet.activate"
    forwards = [c for c in calls if isinstance(c, tuple)]
    # Euler, 3 steps, cond and uncond in one batch of 2; timesteps per row; context [2, 77, 32]
    assert forwards == [("forward", (2, 4, 8, 8), (2,), (2, 77, 32), [])] * 3
    assert not np.array_equal(plain, replaced)
    calls.clear()
    again_plain = _job(offered, sd_unet="None")  # an override for this job only ...
    assert calls == ["unet.deactivate"] and np.array_equal(plain, again_plain)
    assert offered.opts.sd_unet == "Automatic"  # ... the setting is untouched
    calls.clear()
    assert np.array_equal(_job(offered), replaced)
    assert calls[0] == "unet.activate"
    calls.clear()
    _set(offered, "sd_unet", "None")  # the setting changed: switched at once
    assert calls == ["unet.deactivate"] and sd_unet.current_unet is None


def test_an_override_of_the_optimization_lasts_one_job(offered):
    _set(offered, "cross_attention_optimization", "SDP")
    calls.clear()
    _job(offered, cross_attention_optimization="fast-attn - an extension's", sd_unet="None")
    assert calls == ["fast.apply"]
    _job(offered, sd_unet="None")
    assert calls == ["fast.apply", "fast.undo"]
    assert isinstance(sd_hijack.current_optimizer, sd_hijack_optimizations.SdOptimizationSdp)


def test_a_refused_change_through_the_api_is_a_422(offered):
    from fastapi import FastAPI, HTTPException
    from modules.api.api import Api
    api = Api(FastAPI())
    with pytest.raises(HTTPException) as raised:
        api.set_config({"cross_attention_optimization": "broken"})
    assert raised.value.status_code == 422 and "failed to apply" in raised.value.detail
    assert offered.opts.cross_attention_optimization != "broken"


def test_an_sdxl_sd_unet_gets_ldm_s_y_vector(offered):
    import math
    seen = []

    class Recording(sd_unet.SdUnet):
        def forward(self, x, timesteps, context, *args, **kwargs):
            seen.append(kwargs["y"])
            return torch.zeros_like(x)

    class AnyModel(sd_unet.SdUnetOption):
        label = "[TRT] any"

        def create_unet(self):
            return Recording()

    with _also_offered(offered, AnyModel()):
        _set(offered, "cross_attention_optimization", "fast-attn - an extension's")
        calls.clear()
        _job(offered, sd_model_checkpoint="tiny-sdxl", sd_unet="[TRT] any")
        assert calls == ["fast.undo", "fast.apply"]  # applied again for the model that loaded
    # pooled embedding (48) then the 6 time ids' sinusoidal embeddings (8 each): 96 as the tiny
    # UNet's projection_class_embeddings_input_dim
    y = seen[0]
    assert y.shape == (2, 96)
    freqs = [math.exp(-math.log(10000) * i / 4) for i in range(4)]
    reference = [f(v * k) for v in (64, 64, 0, 0, 64, 64) for f in (math.cos, math.sin) for k in freqs]
    assert torch.allclose(y[0, 48:].float(), torch.tensor(reference), atol=1e-4)


def test_an_sd_unet_that_cannot_activate_is_refused_and_fails_only_the_job_that_asks(offered):
    from modules.job_errors import GenerationError

    class BrokenEngine(sd_unet.SdUnetOption):
        label = "[TRT] broken"

        def create_unet(self):
            raise RuntimeError("engine file is missing")

    with _also_offered(offered, BrokenEngine()):
        _set(offered, "sd_unet", "[TRT] tiny-sd1")
        calls.clear()
        before = offered.opts.sd_unet
        with pytest.raises(OptionError, match=r"UNet '\[TRT\] broken' \(from base/test_model_options.py/"
                                              r"list_unets[-0-9]*\) could not be created: RuntimeError: engine file"):
            _set(offered, "sd_unet", "[TRT] broken")
        assert offered.opts.sd_unet == before
        assert isinstance(sd_unet.current_unet, ZeroUnet) and calls == []  # the previous one stays
        with pytest.raises(GenerationError, match="engine file is missing"):
            _job(offered, sd_unet="[TRT] broken")
        _job(offered, sd_unet="None")  # the next job runs
