"""Interrogation: DeepBooru network and tag formatting, CLIP ranking and categories, BLIP + CLIP
end to end on tiny local models (extras.md §6, §7)."""
import dataclasses
import re
import types

import numpy as np
import pytest
import torch
from PIL import Image

from modules import cmd_args, interrogate, shared
from modules.interrogate import clip_interrogator, deepbooru, deepbooru_model, tiny_models


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, models=str(tmp_path)))
    monkeypatch.setattr(shared, "cmd_opts", cmd_args.build_parser().parse_args([]))
    clip_interrogator._models.clear()
    deepbooru._cache.clear()
    return tmp_path


def opts(**changes):
    base = dict(interrogate_deepbooru_score_threshold=0.5, deepbooru_sort_alpha=True, deepbooru_use_spaces=True,
                deepbooru_escape=True, deepbooru_filter_tags="", interrogate_return_ranks=False)
    return types.SimpleNamespace(**{**base, **changes})


TAGS = ["solo", "rating:safe", "long_hair", "smile_(happy)", "blue_eyes", "back\\slash", "[bracket]"]
PROBS = [0.9, 0.99, 0.7, 0.6, 0.4, 0.55, 0.8]


def test_deepbooru_tag_formatting():
    assert deepbooru.format_tags(TAGS, PROBS, opts()) == \
        "[bracket], back\\\\slash, long hair, smile \\(happy\\), solo"
    assert deepbooru.format_tags(TAGS, PROBS, opts(deepbooru_sort_alpha=False)) == \
        "solo, [bracket], long hair, smile \\(happy\\), back\\\\slash"
    assert deepbooru.format_tags(TAGS, PROBS, opts(deepbooru_use_spaces=False, deepbooru_escape=False,
                                                   deepbooru_filter_tags=" long hair, solo")) == \
        "[bracket], back\\slash, smile_(happy)"
    assert deepbooru.format_tags(TAGS, PROBS, opts(interrogate_return_ranks=True,
                                                   interrogate_deepbooru_score_threshold=0.75)) == \
        "([bracket]:0.800), (solo:0.900)"


@pytest.mark.parametrize("projection_first", [False, True])
def test_deepbooru_network_loads_strictly_and_tags(models_dir, projection_first):
    tags = ["cat", "dog", "rating:safe", "grass"]
    path = models_dir / "torch_deepdanbooru" / "model-resnet_custom_v3.pt"
    path.parent.mkdir()
    torch.save(deepbooru_model.tiny_state_dict(tags, projection_first=projection_first), path)
    net = deepbooru_model.load(str(path))
    assert sum(1 for name, _ in net.named_parameters() if name.endswith("weight")) == 179
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    names, probs = deepbooru.probabilities(image)
    assert names == tags and probs.shape == (4,) and ((probs >= 0) & (probs <= 1)).all()
    expected = deepbooru.format_tags(tags, probs, shared.opts)
    assert shared.job_queue.run(lambda: interrogate.interrogate(image, "deepdanbooru")) == expected


def test_resize_and_fill_stretches_edges():
    image = Image.new("RGB", (100, 50), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 1))   # top row red
    image.paste((0, 255, 0), (0, 49, 100, 50))  # bottom row green
    out = np.asarray(deepbooru.resize_and_fill(image))
    assert out.shape == (512, 512, 3)
    assert out[10, 256].tolist() == [255, 0, 0] and out[500, 256].tolist() == [0, 255, 0]
    assert out[256, 256, 2] > 200


def test_missing_models_name_the_folders(models_dir):
    image = Image.new("RGB", (8, 8))
    with pytest.raises(interrogate.InterrogateUnavailable, match="torch_deepdanbooru .*model-resnet_custom_v3.pt"):
        interrogate.interrogate(image, "deepdanbooru")
    with pytest.raises(interrogate.InterrogateUnavailable, match=r"Interrogation model not installed: .*BLIP"):
        interrogate.interrogate(image, "clip")


def test_clip_ranking_and_categories(tmp_path):
    image = torch.tensor([[1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    ranked = clip_interrogator.rank(image, text, ["a", "b", "c"], 2)
    logits = 100 * torch.nn.functional.normalize(text, dim=-1)[:, 0]
    expected = logits.softmax(0)
    assert [t for t, _ in ranked] == ["a", "c"] and ranked[0][1] == pytest.approx(float(expected[0]))
    assert len(clip_interrogator.rank(image, text, ["a", "b", "c"], 10)) == 3
    (tmp_path / "mediums.txt").write_text("oil painting\nphoto\n\nsketch\n")
    (tmp_path / "flavors.top3.txt").write_text("\n".join(f"flavor {i}" for i in range(10)))
    (tmp_path / "artists.txt").write_text("someone\n")
    found = clip_interrogator.load_categories(str(tmp_path), ["artists"], 2)
    assert found == [("flavors", 3, ["flavor 0", "flavor 1"]), ("mediums", 1, ["oil painting", "photo"])]
    assert clip_interrogator.load_categories(str(tmp_path / "absent"), [], 0) == []


def test_clip_interrogation_with_tiny_blip_and_clip(models_dir, tmp_path, monkeypatch):
    tiny_models.write_blip(str(models_dir / "BLIP" / "blip-tiny"))
    tiny_models.write_clip(str(models_dir / "CLIP" / "clip-tiny"))
    categories = tmp_path / "interrogate"
    categories.mkdir()
    (categories / "mediums.txt").write_text("oil painting\nphoto\nsketch\n")
    (categories / "flavors.top2.txt").write_text("moody\nbright\ngrainy\n")
    monkeypatch.setattr(clip_interrogator, "categories_folder", lambda: str(categories))
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    with shared.opts.override({"interrogate_clip_min_length": 6, "interrogate_clip_max_length": 10}):
        text = clip_interrogator.interrogate(image)
    parts = text.split(", ")
    caption = parts[0]
    assert caption and not caption.startswith("a picture of")
    assert set(caption.split()) <= set(tiny_models.BLIP_WORDS)
    assert len(parts) == 4 and parts[1] in ("moody", "bright", "grainy")
    assert parts[3] in ("oil painting", "photo", "sketch")
    with shared.opts.override({"interrogate_return_ranks": True, "interrogate_clip_min_length": 6,
                               "interrogate_clip_max_length": 10}):
        ranked = clip_interrogator.interrogate(image)
    assert re.fullmatch(r".+, \((moody|bright|grainy):\d\.\d{3}\), \((moody|bright|grainy):\d\.\d{3}\), "
                        r"\((oil painting|photo|sketch):\d\.\d{3}\)", ranked)
    assert ranked.split(", ")[0] == caption  # deterministic beam search
