"""The Settings tab's Defaults and Actions pages, their handlers called in-process (ui.md §9.4-9.5):
Defaults lists the controls whose value differs from ui-config.json and writes only those;
Actions unloads / reloads the checkpoint and hashes every checkpoint on the job queue."""
import hashlib
import json

import gradio as gr
import pytest

from modules.ui import settings_pages, ui_config


@pytest.fixture
def page(tmp_path):
    """A tiny UI with one tab; apply_to_ui writes the code's defaults into a fresh ui-config.json."""
    filename = str(tmp_path / "ui-config.json")
    with gr.Blocks() as demo:
        with gr.Tab("txt2img", id="txt2img"):
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
            mode = gr.Radio(["Just resize", "Crop and resize"], value="Just resize", type="index", label="Resize mode")
            prompt = gr.Textbox(label="Prompt")
            gr.Button("Generate")
        ui_config.apply_to_ui(demo, filename)
    tracked = ui_config.value_tracked_components(ui_config.tracked_components(demo))
    return filename, tracked, (steps, mode, prompt)


def test_defaults_page_shows_only_the_changed_defaults(page):
    filename, tracked, _ = page
    assert [prefix for prefix, _ in tracked] == ["txt2img/Sampling steps", "txt2img/Resize mode", "txt2img/Prompt"]
    assert ui_config.view_changes(tracked, (20, 0, ""), filename) == ([["(no changes)", "", ""]], "No changes.")
    rows, summary = ui_config.view_changes(tracked, (30, 1, ""), filename)
    assert rows == [["txt2img/Sampling steps/value", 20, 30], ["txt2img/Resize mode/value", "Just resize", "Crop and resize"]]
    assert summary == "2 changes"


def test_defaults_page_apply_writes_the_changed_values_and_keeps_the_rest(page):
    filename, tracked, _ = page
    before = json.load(open(filename, encoding="utf8"))
    message = ui_config.save_changes(tracked, (42, 1, "a cat"), filename)
    assert message == f"Wrote 3 changed defaults to {filename}; Reload UI to use them."
    after = json.load(open(filename, encoding="utf8"))
    expected = dict(before, **{"txt2img/Sampling steps/value": 42, "txt2img/Resize mode/value": "Crop and resize",
                               "txt2img/Prompt/value": "a cat"})
    assert after == expected
    assert ui_config.view_changes(tracked, (42, 1, "a cat"), filename)[1] == "No changes."
    # the saved defaults are what the next build shows
    with gr.Blocks() as demo:
        with gr.Tab("txt2img", id="txt2img"):
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
        ui_config.apply_to_ui(demo, filename)
    assert steps.value == 42


def test_defaults_page_leaves_an_unreadable_file_alone(page):
    filename, tracked, _ = page
    with open(filename, "w", encoding="utf8") as file:
        file.write("{not json")
    assert ui_config.save_changes(tracked, (42, 1, ""), filename) == \
        f"<span class='error'>{filename} could not be read; not overwritten</span>"
    assert open(filename, encoding="utf8").read() == "{not json"


def test_actions_unload_reload_and_hash_every_checkpoint(webui_session):
    shared = webui_session
    from modules import sd_models
    shared.job_queue.run(lambda: shared.model_holder.switch_to(sd_models.find_checkpoint("tiny-sd1")), name="test-load")
    model = shared.model_holder.sd_model
    title = model.sd_checkpoint_info.title
    message = settings_pages._unload()
    assert message.startswith(f"Unloaded {title} to RAM in ") and message.endswith(" s.")
    assert model.in_ram and all(p.device.type == "cpu" for p in model.unet.parameters())
    message = settings_pages._reload()
    assert message.startswith(f"Loaded {title} to {model.device_config.device} in ")
    assert not getattr(model, "in_ram", False)
    files = [info for info in sd_models.checkpoints_list.values() if info.filename.endswith(".safetensors")]
    for info in files:
        info.sha256 = info.shorthash = None
    message = settings_pages.calculate_all_hashes(2)
    total = len(sd_models.checkpoints_list)
    assert message.startswith(f"Hashes of {total} checkpoints ready (")
    for info in files:
        assert info.sha256 == hashlib.sha256(open(info.filename, "rb").read()).hexdigest(), info.name
    assert settings_pages.calculate_all_hashes(1) == f"Hashes of {total} checkpoints ready (0 calculated now)."
