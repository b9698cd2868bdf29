"""Generic callbacks called at A1111's points: on_extra_noise (img2img extra noise),
on_before_token_counter (the prompt token counters), on_ui_train_tabs (the Train tab)."""
import numpy as np
import pytest
from PIL import Image

from modules import processing, script_callbacks, sd_models


@pytest.fixture
def registered():
    added = []

    def register(on, callback):
        on(callback)
        added.append(callback)
    yield register
    for callback in added:
        script_callbacks.remove_callbacks_for_function(callback)
    # the lists built from those callbacks are module state: later tests must not see their items
    from modules import sd_hijack, sd_unet
    sd_hijack.list_optimizers()
    sd_unet.list_unets()


@pytest.fixture(scope="module")
def loaded(webui_session):
    info = sd_models.find_checkpoint("tiny-sd1")
    webui_session.job_queue.run(lambda: webui_session.model_holder.switch_to(info))
    return webui_session


def _img2img(shared, extra_noise):
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    p = processing.StableDiffusionProcessingImg2Img(
        prompt="a tower", steps=3, width=64, height=64, seed=8, sampler_name="Euler", init_images=[picture],
        denoising_strength=0.6, do_not_save_samples=True, do_not_save_grid=True,
        override_settings={"img2img_extra_noise": extra_noise})
    return shared.job_queue.run(lambda: processing.process_images(p))


def test_extra_noise_callback_can_replace_the_noise(loaded, registered):
    import torch
    seen = []

    def zero_noise(params):
        seen.append((tuple(params.noise.shape), tuple(params.x.shape), tuple(params.xi.shape)))
        params.noise = torch.zeros_like(params.noise)
    registered(script_callbacks.on_extra_noise, zero_noise)
    with_zero_extra = _img2img(loaded, 0.5)
    assert seen == [((1, 4, 8, 8),) * 3]
    assert "Extra noise: 0.5" in with_zero_extra.infotexts[0]
    script_callbacks.remove_callbacks_for_function(zero_noise)
    without_extra = _img2img(loaded, 0.0)
    plain_extra = _img2img(loaded, 0.5)
    assert len(seen) == 1  # not called without extra noise
    assert np.array_equal(np.asarray(with_zero_extra.images[0]), np.asarray(without_extra.images[0]))
    assert not np.array_equal(np.asarray(plain_extra.images[0]), np.asarray(without_extra.images[0]))


def test_before_token_counter_rewrites_what_is_counted(webui_session, registered):
    from modules.ui.txt2img import count_tokens
    calls = []

    def longer(params):
        calls.append((params.prompt, params.steps, params.styles, params.is_positive))
        params.prompt = params.prompt + " and a red balloon"
    reference = count_tokens("a dog and a red balloon", 20)
    registered(script_callbacks.on_before_token_counter, longer)
    assert count_tokens("a dog", 20, ["Style A"], is_positive=False) == reference
    assert calls == [("a dog", 20, ["Style A"], False)]


def test_ui_train_tabs_callback_adds_a_tab(webui_session, registered):
    import gradio as gr
    from modules.ui import train
    got = []

    def add_tab(params):
        got.append(params.txt2img_preview_params)
        with gr.Tab("Extension training"):
            gr.Textbox(value="from on_ui_train_tabs", elem_id="ext_train_box")
    registered(script_callbacks.on_ui_train_tabs, add_tab)
    with gr.Blocks() as demo:
        prompt = gr.Textbox()
        train.create({"prompt": prompt})
    assert got == [[prompt]]
    assert any(getattr(block, "elem_id", None) == "ext_train_box" for block in demo.blocks.values())


def test_localizations_are_listed_and_put_into_the_page(webui_session, tmp_path):
    import json
    from modules import localization
    folder = tmp_path / "localizations"
    folder.mkdir()
    (folder / "xx_XX.json").write_text(json.dumps({"Generate": "Erzeugen", "Sampling steps": "Schritte"}),
                                       encoding="utf8")
    (folder / "notes.txt").write_text("not a table")
    assert localization.list_localizations(str(folder)) == {"xx_XX": str(folder / "xx_XX.json")}
    assert localization.localization_js("xx_XX") == \
        'window.localization = {"Generate": "Erzeugen", "Sampling steps": "Schritte"}'
    assert localization.localization_js("None") == "window.localization = {}"
    assert localization.localization_js("missing") == "window.localization = {}"  # reported, page still works


def test_img2img_tab_components_reach_the_img2img_scripts_component_hooks(webui_session):
    import gradio as gr
    from modules import scripts
    from modules.extension_loading import component_hooks, startup
    from modules.ui import img2img

    class Watcher(scripts.Script):
        seen: list = []

        def title(self):
            return "Watcher"

        def after_component(self, component, **kwargs):
            self.seen.append(kwargs.get("elem_id"))
    watcher = Watcher()
    runner = scripts.scripts_img2img
    startup.before_ui()  # as webui does: txt2img's scripts see components first
    runner.scripts.append(watcher)
    try:
        with gr.Blocks():
            img2img.create()
    finally:
        runner.scripts.remove(watcher)
        startup.after_ui()
    assert "img2img_prompt" in watcher.seen and "img2img_denoising_strength" in watcher.seen
    assert component_hooks.runners == []


def test_list_optimizers_and_list_unets_collect_what_extensions_offer(webui_session, registered):
    from modules import sd_hijack, sd_hijack_optimizations, sd_unet

    class Fast(sd_hijack_optimizations.SdOptimization):
        name, label, priority = "fast-attn", "an extension's", 100

    class Missing(sd_hijack_optimizations.SdOptimization):
        name = "missing"

        def is_available(self):
            return False

    class Engine(sd_unet.SdUnetOption):
        model_name, label = "tiny-sd1", "[TRT] tiny-sd1"
    registered(script_callbacks.on_list_optimizers, lambda res: res.extend([Missing(), Fast()]))
    registered(script_callbacks.on_list_unets, lambda res: res.append(Engine()))
    assert [o.name for o in sd_hijack.list_optimizers()] == ["fast-attn", "sdp"]
    assert sd_hijack.optimizer_titles() == ["fast-attn - an extension's", "SDP"]
    (engine,) = sd_unet.list_unets()
    assert sd_unet.get_unet_option("[TRT] tiny-sd1") is engine
    assert sd_unet.get_unet_option("None") is None
