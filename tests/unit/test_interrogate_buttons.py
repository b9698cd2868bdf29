"""img2img's 📎/📦 buttons: caption the visible mode's image into the prompt, caption a batch folder
into <stem>.txt files, and say which file is missing instead of failing."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from modules import interrogate
from modules.interrogate import deepbooru, deepbooru_model
from modules.ui import interrogate_buttons

SOURCES = ["img2img", "sketch", "inpaint", "inpaint_sketch", "upload_image", "upload_mask"]
TAGS = ["cat", "dog", "grass"]


@pytest.fixture
def shared(webui_session, tmp_path, monkeypatch):
    monkeypatch.setattr(webui_session, "paths", dataclasses.replace(webui_session.paths, models=str(tmp_path)))
    deepbooru._cache.clear()
    yield webui_session
    deepbooru._cache.clear()


def picture(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def write_deepbooru(shared, tmp_path):
    path = tmp_path / "torch_deepdanbooru" / "model-resnet_custom_v3.pt"
    path.parent.mkdir()
    torch.save(deepbooru_model.tiny_state_dict(TAGS), path)
    shared.opts.set("interrogate_deepbooru_score_threshold", 0.0, run_callbacks=False)


def values(mode, **sources):
    return [mode, *[sources.get(name) for name in SOURCES], "", ""]


def test_deepbooru_button_replaces_the_prompt_with_the_modes_image(shared, tmp_path):
    write_deepbooru(shared, tmp_path)
    try:
        image = picture(1)
        expected = shared.job_queue.run(lambda: interrogate.interrogate(image, "deepdanbooru"))
        assert expected and set(expected.split(", ")) <= set(TAGS)
        prompt, log = interrogate_buttons.run("deepdanbooru", SOURCES, *values(0, img2img=image))
        assert prompt == expected and log == ""
        editor = {"background": image.convert("RGBA"), "layers": [], "composite": image.convert("RGBA")}
        assert interrogate_buttons.run("deepdanbooru", SOURCES, *values(2, inpaint=editor))[0] == expected
        assert interrogate_buttons.run("deepdanbooru", SOURCES, *values(4, upload_image=image))[0] == expected
    finally:
        shared.opts.set("interrogate_deepbooru_score_threshold", 0.5, run_callbacks=False)


def test_batch_mode_appends_captions_to_text_files(shared, tmp_path):
    write_deepbooru(shared, tmp_path)
    try:
        folder, out = tmp_path / "in", tmp_path / "out"
        folder.mkdir()
        picture(2).save(folder / "a.png")
        picture(3).save(folder / "b.png")
        (out).mkdir()
        (out / "a.txt").write_text("old line\n")
        prompt, log = interrogate_buttons.run("deepdanbooru", SOURCES, 5, *[None] * 6, str(folder), str(out))
        assert prompt is not None and "captioned 2 file(s)" in log
        lines = (out / "a.txt").read_text().splitlines()
        assert lines[0] == "old line" and len(lines) == 2 and lines[1]
        assert len((out / "b.txt").read_text().splitlines()) == 1
    finally:
        shared.opts.set("interrogate_deepbooru_score_threshold", 0.5, run_callbacks=False)


def test_missing_weights_and_missing_image_are_messages(shared, tmp_path):
    prompt, log = interrogate_buttons.run("deepdanbooru", SOURCES, *values(0, img2img=picture()))
    assert "model-resnet_custom_v3.pt" in log and "torch_deepdanbooru" in log and "error" in log
    prompt, log = interrogate_buttons.run("clip", SOURCES, *values(0, img2img=picture()))
    assert "BLIP" in log or "CLIP" in log
    prompt, log = interrogate_buttons.run("clip", SOURCES, *values(0))
    assert "upload or paste an image first" in log
