"""Settings > Callbacks (ui.md §9.1, extensions.md §6.3): one priority list per callback category
and script hook that has callbacks, on the System category's Callbacks page, marked "(requires
restart)"; a list saved in config.json puts the named callbacks first when the program starts."""
import json
import re

import gradio as gr
import pytest

from modules import script_callbacks, scripts
from modules.extension_loading import callback_settings, startup
from modules.options import OptionError, Options
from modules.settings import presentation
from modules.ui import settings_components
from modules.ui.settings import settings_pages

A, B = "ext-a/first.py/image_grid", "ext-b/second.py/image_grid/late"


@pytest.fixture
def two_grid_callbacks(monkeypatch):
    """Two image_grid callbacks of two extensions (the list of this category is replaced for the
    test), and the order they ran in."""
    calls = []
    monkeypatch.setitem(script_callbacks.callback_map, "callbacks_image_grid", [])
    monkeypatch.setattr(script_callbacks, "ordering_rules", {})
    script_callbacks.current_script = ("/x/first.py", "ext-a")
    script_callbacks.on_image_grid(lambda params: calls.append("a"))
    script_callbacks.current_script = ("/x/second.py", "ext-b")
    script_callbacks.on_image_grid(lambda params: calls.append("b"), name="late")
    script_callbacks.current_script = None
    yield calls
    script_callbacks._ordered_cache.clear()


def restarted_with(config_file, monkeypatch, shared) -> Options:
    """What a start does with config.json: load it into fresh settings, then register the lists."""
    from modules.shared_options import register_builtin_options
    opts = Options()
    register_builtin_options(opts)
    opts.load(str(config_file))
    monkeypatch.setattr(shared, "opts", opts)
    callback_settings.register(opts)
    script_callbacks._ordered_cache.clear()  # a new process starts without an order
    return opts


def test_each_category_with_callbacks_gets_a_restart_marked_list_on_the_callbacks_page(
        webui_session, two_grid_callbacks):
    opts = Options()
    keys = callback_settings.register(opts)
    info = opts.data_labels["prioritized_callbacks_image_grid"]
    assert info.label == "image_grid callback priority"
    assert info.default == [] and opts.prioritized_callbacks_image_grid == []
    assert (info.component, info.component_args) == ("multiselect", {"choices": [A, B]})
    assert presentation.needs_restart(info) and not presentation.needs_reload_ui(info)
    assert f"(default order: {A}, {B})" in info.comment_after
    # categories without callbacks get no list; script hooks are categories script_<method>
    empty = [c for c in script_callbacks.CATEGORIES if not script_callbacks.callback_map[f"callbacks_{c}"]]
    assert empty and not any(f"prioritized_callbacks_{c}" in keys for c in empty)
    hook_keys = [k for k in keys if k.startswith("prioritized_callbacks_script_")]
    assert hook_keys
    for key in hook_keys:
        method = key.removeprefix("prioritized_callbacks_script_")
        assert method in scripts.HOOKS
        for name in opts.data_labels[key].component_args["choices"]:
            assert re.fullmatch(rf"[^/]+/[^/]+\.py/script_{method}/\w+", name), name
    with gr.Blocks():
        control = settings_components.create("prioritized_callbacks_image_grid", info, [B])
    assert isinstance(control, gr.Dropdown) and control.multiselect and control.value == [B]
    assert "(requires restart)" in control.info
    pages = settings_pages(opts)
    assert [(p["label"], p["category"], p["dom_id"]) for p in pages] == [("Callbacks", "system", "settings_callbacks")]
    assert pages[0]["keys"] == keys


def test_the_program_registers_the_lists_at_start(webui_session):
    info = webui_session.opts.data_labels["prioritized_callbacks_script_process"]
    assert info.section == ("callbacks", "Callbacks") and info.category_id == "system"
    assert "base/controlnet.py/script_process/ControlNetScript" in info.component_args["choices"]
    labels = [p["label"] for p in settings_pages(webui_session.opts) if p["category"] == "system"]
    assert labels == ["API", "Callbacks", "Profiler", "System"]
    assert script_callbacks.prioritized_names is startup._prioritized  # the real ordering reads opts


def test_a_saved_list_reorders_the_callbacks_after_a_restart(webui_session, two_grid_callbacks, tmp_path,
                                                              monkeypatch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"prioritized_callbacks_image_grid": [B, "gone/ext.py/image_grid"]}))
    restarted_with(config, monkeypatch, webui_session)
    assert [c.name for c in script_callbacks.ordered_callbacks("image_grid")] == [B, A]
    script_callbacks.image_grid_callback(script_callbacks.ImageGridLoopParams([], 1, 1))
    assert two_grid_callbacks == ["b", "a"]
    # the Settings page still offers the default order, not the running one
    opts = webui_session.opts
    assert opts.data_labels["prioritized_callbacks_image_grid"].component_args["choices"] == [A, B]


def test_a_list_that_does_not_exist_or_is_no_list_keeps_the_default_order(webui_session, two_grid_callbacks,
                                                                          tmp_path, monkeypatch, capsys):
    assert startup._prioritized("no_such_category") == []
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"prioritized_callbacks_image_grid": 5}))
    opts = restarted_with(config, monkeypatch, webui_session)
    assert opts.prioritized_callbacks_image_grid == []
    assert f"Settings file {config}: Setting 'prioritized_callbacks_image_grid' cannot take the value 5" \
        in capsys.readouterr().out
    assert [c.name for c in script_callbacks.ordered_callbacks("image_grid")] == [A, B]
    with pytest.raises(OptionError, match="expected a list of callback names"):
        opts.validate({"prioritized_callbacks_image_grid": [B, 3]})


def test_a_script_hook_list_puts_the_named_script_first(webui_session, monkeypatch):
    class First(scripts.Script):
        def process(self, p, *args):
            pass

    class Second(First):
        pass
    runner = scripts.ScriptRunner()
    runner.alwayson_scripts = [First(), Second()]
    for script, file in zip(runner.alwayson_scripts, ("/x/one.py", "/x/two.py")):
        script.filename = file
    names = [c.name for c in runner.hook_callbacks("process", enable_user_sort=False)]
    assert names == ["base/one.py/script_process/First", "base/two.py/script_process/Second"]
    monkeypatch.setitem(webui_session.opts.data, "prioritized_callbacks_script_process", [names[1]])
    assert [type(s).__name__ for s in runner.ordered_hook("process")] == ["Second", "First"]
