"""Postprocessing for training sets: split, focal crop, auto-sized crop, flipped copies, caption
(extras.md §4.4, §7 assertion 9)."""
import numpy as np
from PIL import Image

from modules import interrogate, shared
from modules.postprocessing import extras_job, runner, training_steps
from modules.scripts_postprocessing import PostprocessedImage


def noise(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_split_piece_count_and_size():
    pieces = training_steps.split_pieces(noise(100, 300), 64, 64, 0.5, 0.2)
    # resized to 64x192; n = ceil((192 - 12.8) / 51.2) = 4 pieces of 64x64
    assert [p.size for p in pieces] == [(64, 64)] * 4
    assert training_steps.split_pieces(noise(100, 120), 64, 64, 0.5, 0.2) == []  # ratio 0.83 > threshold
    wide = training_steps.split_pieces(noise(400, 100), 128, 64, 0.9, 0.0)
    assert [p.size for p in wide] == [(128, 64)] * 2


def test_auto_size_objectives():
    best_area = training_steps.auto_size(1000, 500, 384, 768, 4096, 409600, "Maximize area", 0.1)
    best_error = training_steps.auto_size(1000, 500, 384, 768, 4096, 409600, "Minimize error", 0.1)
    for w, h in (best_area, best_error):
        assert 384 <= w <= 768 and 384 <= h <= 768 and w * h <= 409600 and (w - 384) % 64 == 0
    assert best_error == (768, 384)  # exactly 2:1
    assert best_area[0] * best_area[1] >= best_error[0] * best_error[1]
    assert training_steps.auto_size(1000, 100, 384, 768, 4096, 409600, "Maximize area", 0.1) is None


def test_flipped_copies_and_focal_crop_through_the_runner(tmp_path):
    steps = runner.ordered_steps()
    args = {"Upscale": {"upscale_mode": 1, "upscale_to_width": 64, "upscale_to_height": 64, "upscaler_1_name": "None"},
            "Auto focal point crop": {"enable": True, "debug": True},
            "Create flipped copies": {"enable": True, "option": ["Horizontal", "Both"]}}
    result = extras_job.run([extras_job.ExtrasInput(noise(120, 80), "pic")], args, save=True,
                            output_dir=str(tmp_path), steps=steps)
    sizes = [o.image.size for o in result.outputs]
    assert sizes[0] == (64, 64) and len(sizes) == 4  # main, debug copy, two flips
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["pic-flipped-both.png", "pic-flipped.png", "pic-focal-crop-debug.png", "pic.png"]
    main = np.asarray(result.outputs[0].image)
    flipped = np.asarray(Image.open(tmp_path / "pic-flipped.png").convert("RGB"))
    assert np.array_equal(flipped, main[:, ::-1])


def test_caption_written_with_existing_caption_action(tmp_path, monkeypatch):
    monkeypatch.setattr(interrogate, "interrogate", lambda image, model: {"deepdanbooru": "cat, sofa"}[model])
    (tmp_path / "pic.txt").write_text("old words")
    steps = runner.ordered_steps()
    args = {"Caption": {"enable": True, "option": ["Deepbooru"]}}
    with shared.opts.override({"postprocessing_existing_caption_action": "Prepend"}):
        extras_job.run([extras_job.ExtrasInput(noise(20, 20), "pic")], args, save=True,
                       output_dir=str(tmp_path), steps=steps)
    assert (tmp_path / "pic.txt").read_text() == "old words cat, sofa"
    for action, expected in (("Ignore", "new"), ("Keep", "old"), ("Append", "new old")):
        assert training_steps.combine_caption("old", "new", action) == expected
    assert training_steps.combine_caption("", "new", "Keep") == "new"


def test_focal_crop_is_exactly_the_target():
    crop, _, _ = training_steps.focal_crop(noise(300, 100), 96, 96, {"face": 0.9, "entropy": 0.15, "edges": 0.5})
    assert crop.size == (96, 96)
    pp = PostprocessedImage(noise(50, 50))
    training_steps.ScriptPostprocessingFocalCrop().process(pp, enable=True)  # no target: unchanged
    assert pp.image.size == (50, 50)
