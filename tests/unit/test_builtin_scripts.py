"""Built-in scripts (X/Y/Z plot, Prompt matrix, Prompts from file or textbox) through the same
Script API extensions use, compared with the single generations they stand for."""
import numpy as np
import pytest

from modules import processing, scripts, sd_models

BASE = dict(prompt="a cat", negative_prompt="", steps=3, width=64, height=64, seed=11, cfg_scale=5.0,
            sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)


@pytest.fixture(scope="module")
def shared(webui_session):
    from modules.extension_loading import startup
    startup.setup_scripts_without_ui()
    info = sd_models.find_checkpoint("tiny-sd1")
    webui_session.job_queue.run(lambda: webui_session.model_holder.switch_to(info))
    return webui_session


def run_script(shared, title, args, **fields):
    runner = scripts.scripts_txt2img
    script = runner.script(title)
    p = processing.StableDiffusionProcessingTxt2Img(**{**BASE, **fields})
    full = runner.default_args()
    full[0] = runner.selectable_scripts.index(script) + 1
    full[script.args_from:script.args_from + len(args)] = list(args)
    p.scripts, p.script_args = runner, full
    return shared.job_queue.run(lambda: scripts.process_with_scripts(p))


def single(shared, **fields):
    p = processing.StableDiffusionProcessingTxt2Img(**{**BASE, **fields})
    return np.asarray(shared.job_queue.run(lambda: processing.process_images(p)).images[0])


def test_builtin_scripts_are_selectable_with_a1111_names(shared):
    titles = scripts.scripts_txt2img.titles
    assert {"X/Y/Z plot", "Prompt matrix", "Prompts from file or textbox"} <= set(titles)
    xyz = scripts.scripts_txt2img.script("x/y/z plot")
    assert xyz.args_to - xyz.args_from == 18
    assert [c.label for c in xyz.controls][:3] == ["X type", "X values", "X values"]


def test_xyz_seed_by_cfg_grid_equals_single_generations(shared):
    args = [1, "11, 12", [], "CFG Scale", "3, 7.5", [], 0, "", [], True, True, False, False, False, False,
            False, 0, False]
    processed = run_script(shared, "X/Y/Z plot", args)
    grid, cells = processed.images[0], processed.images[1:]
    assert len(cells) == 4
    expected = [single(shared, seed=seed, cfg_scale=cfg) for cfg in (3.0, 7.5) for seed in (11, 12)]
    for cell, reference in zip(cells, expected):
        assert np.array_equal(np.asarray(cell), reference)
    pad_left, pad_top = grid.width - 128, grid.height - 128
    assert pad_left > 0 and pad_top > 0  # room for the row and column labels
    pixels = np.asarray(grid)
    for iy in range(2):
        for ix in range(2):
            y, x = pad_top + iy * 64, pad_left + ix * 64
            assert np.array_equal(pixels[y:y + 64, x:x + 64], expected[iy * 2 + ix])
    top, left = pixels[:pad_top, pad_left:], pixels[pad_top:, :pad_left]
    for col in range(2):  # dark text over each column and beside each row
        assert (top[:, col * 64:(col + 1) * 64] < 100).any()
        assert (left[col * 64:(col + 1) * 64] < 100).any()
    info = processed.infotexts[0]
    for text in ("Script: X/Y/Z plot", "X Type: Seed", "X Values: \"11, 12\"", "Fixed X Values: \"11, 12\"",
                 "Y Type: CFG Scale", "Y Values: \"3, 7.5\""):
        assert text in info


def test_xyz_value_syntax_and_errors(shared):
    from importlib import import_module
    xyz = import_module(type(scripts.scripts_txt2img.script("x/y/z plot")).__module__)
    opts = {o.label: o for o in xyz.AXES}
    assert xyz.parse_values(opts["Steps"], "1-5", [], False) == [1, 2, 3, 4, 5]
    assert xyz.parse_values(opts["Steps"], "10-20 (+5)", [], False) == [10, 15, 20]
    assert xyz.parse_values(opts["Steps"], "1-10 [4]", [], False) == [1, 4, 7, 10]
    assert xyz.parse_values(opts["Seed"], "-5-5", [], False)[0] == -5
    assert xyz.parse_values(opts["CFG Scale"], "0.5-1.0 (+0.25)", [], False) == [0.5, 0.75, 1.0]
    assert xyz.parse_values(opts["CFG Scale"], "2-8 [4]", [], False) == [2, 4, 6, 8]
    assert xyz.parse_values(opts["Prompt S/R"], '"a, b", c', [], False) == ["a, b", "c"]
    assert len(xyz.parse_values(opts["Prompt order"], "x, y, z", [], False)) == 6
    with pytest.raises(processing.GenerationError, match="Prompt S/R did not find dog"):
        run_script(shared, "X/Y/Z plot", ["Prompt S/R", "dog, cat"])
    with pytest.raises(processing.GenerationError, match="Unknown sampler: Nope"):
        run_script(shared, "X/Y/Z plot", ["Sampler", "Nope", [], 0, "", [], 0, "", [], True, False, False,
                                          False, False, False, False, 0, True])
    processed = run_script(shared, "X/Y/Z plot", ["Prompt S/R", "cat, dog", [], 0, "", [], 0, "", [],
                                                  False, True])
    assert processed.all_prompts == ["a cat"]  # the first cell's job
    assert processed.images[0].size == (128, 64)  # no legend: just the two cells


def test_prompt_matrix(shared):
    processed = run_script(shared, "Prompt matrix", [False, False, "positive", "comma", 0], prompt="a cat|red|hat")
    assert processed.all_prompts == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    assert len(processed.images) == 5 and processed.index_of_first_image == 1
    grid = processed.images[0]
    assert grid.width > 128 and grid.height > 128
    assert np.array_equal(np.asarray(processed.images[4]), single(shared, prompt="a cat, red, hat"))


def test_prompts_from_file_lines(shared):
    text = "a dog\n--prompt a red fox --steps 2 --seed 5\n\n--negative_prompt blurry --cfg_scale 4"
    processed = run_script(shared, "Prompts from file or textbox", [False, False, "start", text], prompt="")
    assert processed.all_prompts == ["a dog", "a red fox", ""]
    assert "Steps: 2" in processed.infotexts[1] and "Seed: 5" in processed.infotexts[1]
    assert "Negative prompt: blurry" in processed.infotexts[2] and "CFG scale: 4.0" in processed.infotexts[2]
    assert np.array_equal(np.asarray(processed.images[1]), single(shared, prompt="a red fox", steps=2, seed=5))
    joined = run_script(shared, "Prompts from file or textbox", [False, False, "end", "on grass"], prompt="a cat")
    assert joined.all_prompts == ["a cat on grass"]
