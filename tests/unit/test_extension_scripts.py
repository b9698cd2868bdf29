"""Extensions loaded in-process: discovery and ordering, modules.scripts hooks in the job in
A1111's order, callbacks, a raising extension contained, a wildcards-like extension."""
import dataclasses
import importlib
import os

import gradio as gr
import numpy as np
import pytest

from modules import extensions, processing, script_callbacks, scripts, sd_models
from tests.extension_helpers import install_fixture

SMALL = dict(prompt="a __animal__ in snow", negative_prompt="", steps=3, width=64, height=64, seed=7,
             cfg_scale=5.0, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)


@pytest.fixture(scope="module")
def loaded(webui_session, tmp_path_factory):
    """The test extensions loaded into this process; everything they registered removed afterwards."""
    shared = webui_session
    ext_root = tmp_path_factory.mktemp("extdata")
    for name in ("wildcards-lite", "hook-recorder", "raising-ext"):
        install_fixture(ext_root, name)
    old_paths = shared.paths
    shared.paths = dataclasses.replace(old_paths, data=str(ext_root))
    from modules.extension_loading import startup
    try:
        startup.load_extensions()
        startup.setup_scripts_without_ui()
        info = sd_models.find_checkpoint("tiny-sd1")
        shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
        yield shared
    finally:
        shared.paths = old_paths
        startup.load_extensions()  # back to the program's own scripts only
        startup.setup_scripts_without_ui()


def recorder():
    return next(m for p, m in scripts.loaded_modules.items() if p.endswith("recorder.py"))


def job(shared, recorder_args=(True, 0.5, "tagged"), **fields):
    runner = scripts.scripts_txt2img
    p = processing.StableDiffusionProcessingTxt2Img(**{**SMALL, **fields})
    args = runner.default_args()
    hook = runner.script("hook recorder")
    args[hook.args_from:hook.args_to] = list(recorder_args)
    p.scripts, p.script_args = runner, args
    recorder().CALLS.clear()
    return shared.job_queue.run(lambda: scripts.process_with_scripts(p)), p


def events():
    """Recorded events, each run of cfg_* callbacks (one triple per step) collapsed to one 'cfg'."""
    out = []
    for name, _ in recorder().CALLS:
        if name == "model_loaded":
            continue
        name = "cfg" if name.startswith("cfg_") else name
        if not (name == "cfg" and out and out[-1] == "cfg"):
            out.append(name)
    return out


def test_discovery_names_order_and_load_errors(loaded):
    user = [e for e in extensions.extensions if not e.is_builtin]  # extensions-builtin/ (soft-inpainting) first
    assert [e.name for e in user] == ["hook-recorder", "raising-ext", "wildcards-lite"]
    assert all(e.enabled for e in user)
    assert user[0].canonical_name == "hook-recorder"  # folder name, not metadata Name
    # metadata.ini: recorder.py loads After raising-ext's scripts; the broken import is reported, the rest load
    files = [os.path.basename(s.path) for s in scripts.list_scripts("scripts", ".py")]
    assert files.index("recorder.py") > files.index("b_raising_hooks.py")
    assert any("a_broken_import.py of extension raising-ext" in m and "broken on purpose" in m
               for m in scripts.load_errors)
    titles = [s.name for s in scripts.scripts_txt2img.alwayson_scripts]
    assert {"hook recorder", "raising hooks", "wildcards lite"} <= set(titles)
    # basedir() was the extension folder while the file was imported
    assert recorder().BASEDIR == os.path.join(loaded.paths.data, "extensions", "hook-recorder")
    assert scripts.basedir() != recorder().BASEDIR
    # callback names: <extension>/<file>/<category>
    names = [c.name for c in script_callbacks.callback_map["callbacks_cfg_denoiser"]]
    assert names == ["raising-ext/b_raising_hooks.py/cfg_denoiser", "hook-recorder/recorder.py/cfg_denoiser"]
    # on_ui_settings ran at load: the extension's setting exists with its default
    assert loaded.opts.hook_recorder_note == "default note"


def test_hooks_run_in_a1111_order_inside_the_job(loaded):
    processed, p = job(loaded, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5,
                       hr_second_pass_steps=2)
    assert events() == ["setup", "before_process", "process", "before_process_batch", "process_batch",
                        "process_before_every_sampling", "cfg", "before_hr", "process_before_every_sampling",
                        "cfg", "postprocess_batch", "postprocess_batch_list", "postprocess_image", "postprocess"]
    calls = dict((name, detail) for name, detail in recorder().CALLS)
    assert calls["before_process"] == "default note"
    assert calls["postprocess_batch"] == [1, 3, 96, 96]
    assert calls["postprocess_image"] == [96, 96]
    # CFG batch: the prompt rows then the negative rows
    cfg = [detail for name, detail in recorder().CALLS if name == "cfg_denoiser"]
    assert cfg[0] == [[2, 4, 8, 8], 0, 3] and cfg[1][1] == 1
    assert "Hook recorder: tagged" in processed.infotexts[0]
    assert "Hook recorder strength: 0.5" in processed.infotexts[0]


def test_wildcards_rewrite_all_prompts_and_keep_the_original(loaded):
    processed, p = job(loaded, batch_size=2)
    animals = ["cat", "dog", "fox"]
    assert p.all_prompts == [f"a {animals[s % 3]} in snow" for s in p.all_seeds]
    assert processed.all_prompts == p.all_prompts
    assert "Wildcard prompt: a __animal__ in snow" in processed.infotexts[0]
    assert processed.infotexts[0].startswith(p.all_prompts[0])


def test_a_raising_extension_does_not_break_the_job(loaded, capsys):
    processed, p = job(loaded)
    assert len(processed.images) == 1
    err = capsys.readouterr().err
    assert "process hook fails on purpose" in err and "Raising hooks" not in err or "raising hooks" in err
    assert "Error running callback raising-ext/b_raising_hooks.py/cfg_denoiser" in err
    assert "Error running postprocess_image" in err


def test_postprocess_image_can_replace_the_image(loaded):
    processed, _ = job(loaded, recorder_args=(True, 0.5, "paint-red"))
    assert np.all(np.asarray(processed.images[0]) == [255, 0, 0])


def test_script_hooks_leave_the_image_unchanged_when_they_do_nothing(loaded):
    with_scripts, _ = job(loaded, recorder_args=(False, 0.5, ""), prompt="a red house")
    p = processing.StableDiffusionProcessingTxt2Img(**{**SMALL, "prompt": "a red house"})
    plain = loaded.job_queue.run(lambda: processing.process_images(p))
    assert np.array_equal(np.asarray(with_scripts.images[0]), np.asarray(plain.images[0]))


def test_model_loaded_callback(loaded):
    recorder().CALLS.clear()
    for family in ("sd2-v", "sd1"):
        info = sd_models.find_checkpoint(f"tiny-{family}")
        loaded.job_queue.run(lambda: loaded.model_holder.switch_to(info))
    assert [name for name, _ in recorder().CALLS] == ["model_loaded", "model_loaded"]


def test_callback_order_follows_metadata_and_user_priority(loaded, monkeypatch):
    calls = []
    script_callbacks.current_script = ("/x/first.py", "ext-a")
    script_callbacks.on_before_reload(lambda: calls.append("a"))
    script_callbacks.current_script = ("/x/second.py", "ext-b")
    script_callbacks.on_before_reload(lambda: calls.append("b"), name="named")
    script_callbacks.on_before_reload(lambda: calls.append("b2"), name="named")
    script_callbacks.current_script = None
    names = [c.name for c in script_callbacks.callback_map["callbacks_before_reload"]]
    assert names == ["ext-a/first.py/before_reload", "ext-b/second.py/before_reload/named",
                     "ext-b/second.py/before_reload/named-1"]
    monkeypatch.setattr(script_callbacks, "ordering_rules",
                        {"ext-b/second.py/before_reload/named": (["ext-a/first.py/before_reload"], [])})
    script_callbacks._ordered_cache.clear()
    script_callbacks.before_reload_callback()
    assert calls == ["b", "a", "b2"]
    calls.clear()
    monkeypatch.setattr(script_callbacks, "prioritized_names",
                        lambda category: ["ext-b/second.py/before_reload/named-1"])
    script_callbacks._ordered_cache.clear()
    script_callbacks.before_reload_callback()
    assert calls == ["b2", "b", "a"]
    script_callbacks.callback_map["callbacks_before_reload"].clear()


def test_disabled_list_and_flags(loaded, monkeypatch):
    monkeypatch.setitem(loaded.opts.data, "disabled_extensions", ["raising-ext"])
    assert [e.name for e in extensions.list_extensions() if e.enabled and not e.is_builtin] == \
        ["hook-recorder", "wildcards-lite"]
    monkeypatch.setitem(loaded.opts.data, "disabled_extensions", [])
    monkeypatch.setattr(loaded.cmd_opts, "disable_extra_extensions", True)
    assert [e for e in extensions.list_extensions() if e.enabled and not e.is_builtin] == []  # built-ins stay
    monkeypatch.setattr(loaded.cmd_opts, "disable_extra_extensions", False)
    extensions.list_extensions()


def test_elem_id_and_script_info(loaded):
    hook = scripts.scripts_txt2img.script("Hook recorder")
    assert hook.elem_id("enabled") == "script_txt2img_hook_recorder_enabled"
    assert [a["label"] for a in hook.api_info["args"]] == ["Record", "Strength", "Tag"]
    assert hook.api_info["args"][1] == {"label": "Strength", "value": 0.5, "minimum": 0, "maximum": 1,
                                        "step": 0.05, "choices": None}
    args = scripts.scripts_txt2img.set_named_arg(scripts.scripts_txt2img.default_args(), "hook recorder",
                                                 "script_txt2img_hook_recorder_tag", "x")
    assert args[hook.args_from + 2] == "x"
    assert importlib.import_module("modules.ui_components").FormRow is not None
    assert isinstance(hook.controls[0], gr.Checkbox)


def test_a1111_module_names_extensions_import(loaded):
    from modules import call_queue, devices, generation_parameters_copypaste, infotext_utils, paths, \
        paths_internal, sd_samplers, shared
    for name in ("opts", "cmd_opts", "state", "OptionInfo", "OptionHTML", "options_section", "sd_upscalers",
                 "latent_upscale_modes", "listfiles", "walk_files", "natural_sort_key", "models_path",
                 "script_path", "data_path", "refresh_checkpoints", "list_checkpoint_tiles", "total_tqdm", "device"):
        assert hasattr(shared, name), name
    assert sd_samplers.samplers_map["euler"] == "Euler" and sd_samplers.find_sampler_config("nope") is None
    assert devices.device is not None and devices.get_optimal_device() == devices.device
    assert paths.extensions_dir == paths_internal.extensions_dir == os.path.join(shared.paths.data, "extensions")
    assert infotext_utils.unquote('"a, b"') == "a, b"
    assert generation_parameters_copypaste.parse_generation_parameters("x\nSteps: 3, Sampler: Euler, Size: 64x64")["Steps"] == "3"
    assert call_queue.wrap_queued_call(lambda a: a + 1)(1) == 2
