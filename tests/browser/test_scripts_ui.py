"""The scripts area of txt2img in a real browser: an extension's always-on section with infotext
fields, the Script dropdown running X/Y/Z plot, extension JS and CSS on the page."""
import re
import time

import pytest
from playwright.sync_api import expect

from modules.tiny_models import write_tiny_checkpoint
from tests.browser.test_ui import browser, page, set_job  # noqa: F401 - shared fixtures
from tests.conftest import ServerProcess
from tests.extension_helpers import install_fixture


@pytest.fixture(scope="module")
def ext_ui_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("extui")
    (data / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", seed=0)
    install_fixture(data, "hook-recorder")
    proc = ServerProcess(data, "--api")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def test_extension_js_and_css_are_on_the_page(page, ext_ui_server):  # noqa: F811
    page.goto(ext_ui_server.url + "/")
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=90_000)
    page.wait_for_function("window.hookRecorderLoaded === true", timeout=15_000)
    css = page.evaluate("Array.from(document.querySelectorAll('style')).map(s => s.textContent).join('\\n')")
    assert ".hook-recorder-marker" in css


def test_always_on_section_values_reach_the_job(page, ext_ui_server):  # noqa: F811
    page.goto(ext_ui_server.url + "/")
    set_job(page, "a kite", steps=3, size=(64, 64))
    page.get_by_text("Hook recorder", exact=True).first.click()  # open the extension's accordion
    page.locator("#script_txt2img_hook_recorder_enabled input").check()
    page.locator("#script_txt2img_hook_recorder_tag textarea").fill("ui-tag")
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"Hook recorder: ui-tag"), timeout=60_000)
    expect(info).to_have_value(re.compile(r"Hook recorder strength: 0.5"))


def test_script_dropdown_runs_xyz_plot(page, ext_ui_server):  # noqa: F811
    page.goto(ext_ui_server.url + "/")
    set_job(page, "a boat", steps=3, size=(64, 64))
    x_values = page.locator("#script_txt2img_xyz_plot_x_values textarea")
    expect(x_values).to_be_hidden(timeout=90_000)  # only the chosen script's controls show
    page.locator("#script_list input").click()
    page.get_by_role("option", name="X/Y/Z plot").click()
    expect(x_values).to_be_visible(timeout=10_000)
    x_values.fill("5, 6")
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"Script: X/Y/Z plot, X Type: Seed, X Values: \"5, 6\""), timeout=90_000)
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()


def test_read_parameters_fills_the_scripts_infotext_fields(page, ext_ui_server):  # noqa: F811
    page.goto(ext_ui_server.url + "/")
    page.locator("#txt2img_prompt textarea").fill(
        "a kite\nSteps: 4, Sampler: Euler, Seed: 9, Size: 64x64, Hook recorder: pasted, Hook recorder strength: 0.8")
    page.get_by_text("Hook recorder", exact=True).first.click()
    page.locator("#txt2img_paste").click()
    try:
        expect(page.locator("#script_txt2img_hook_recorder_tag textarea")).to_have_value("pasted", timeout=10_000)
    except AssertionError:
        print(ext_ui_server.output()[-4000:])
        raise
    expect(page.locator("#script_txt2img_hook_recorder_strength input[type=number]")).to_have_value("0.8")
    expect(page.locator("#script_txt2img_hook_recorder_enabled input")).to_be_checked()
    expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("4")


def test_extension_tab_from_on_ui_tabs(page, ext_ui_server):  # noqa: F811
    page.goto(ext_ui_server.url + "/")
    page.get_by_role("tab", name="Recorder").click()
    expect(page.locator("#hook_recorder_notes textarea")).to_have_value("from on_ui_tabs", timeout=10_000)


@pytest.mark.full_ui
def test_img2img_script_dropdown_runs_loopback_and_paste_fills_its_scripts(page, ext_ui_server, tmp_path):  # noqa: F811
    import numpy as np
    from PIL import Image
    picture = tmp_path / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(picture)
    page.set_default_timeout(90_000)  # the machine is shared: actions may wait long
    page.goto(ext_ui_server.url + "/")
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=90_000)
    page.locator("#tabs").get_by_role("tab", name="img2img", exact=True).first.click()
    for name, value in (("steps", "3"), ("width", "64"), ("height", "64")):
        page.locator(f"#img2img_{name} input[type=number]").fill(value)
    tab = page.locator("#tab_img2img")
    # Read parameters fills the img2img always-on script's infotext fields
    page.locator("#img2img_prompt textarea").fill("a hill\nSteps: 3, Sampler: Euler, Seed: 4, Size: 64x64, "
                                                  "Hook recorder: pasted-i2i, Hook recorder strength: 0.7")
    tab.get_by_text("Hook recorder", exact=True).first.click()
    page.locator("#img2img_paste").click()
    expect(page.locator("#script_img2img_hook_recorder_tag textarea")).to_have_value("pasted-i2i", timeout=60_000)
    expect(page.locator("#script_img2img_hook_recorder_enabled input")).to_be_checked()
    page.locator("#img2img_image input[type=file]").set_input_files(str(picture))
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=10_000)
    loops = page.locator("#script_loopback_loops input[type=number]")
    expect(loops).to_be_hidden()
    tab.locator("#script_list input").click()
    page.get_by_role("option", name="Loopback").click()
    expect(loops).to_be_visible(timeout=60_000)
    loops.fill("2")
    loops.press("Enter")
    page.locator("#img2img_generate").click()
    info = page.locator("#img2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"Final denoising strength: 0.5, Denoising curve: Linear"), timeout=90_000)
    expect(info).to_have_value(re.compile(r"Hook recorder: pasted-i2i"))  # the always-on script ran too
    expect(page.locator("#img2img_gallery img")).to_have_count(3)  # the grid and the two loops


# last in the file: it disables hook-recorder and restarts the shared server
def test_extensions_tab_offline_index_then_disable_and_restart(page, ext_ui_server):  # noqa: F811
    import requests
    page.goto(ext_ui_server.url + "/")
    page.get_by_role("tab", name="Extensions").click()
    expect(page.locator("#extensions_installed_html")).to_contain_text("hook-recorder", timeout=10_000)
    page.get_by_role("tab", name="Available").click()
    page.locator("#extensions_load_index").click()
    expect(page.locator("#extensions_index_html")).to_contain_text("this machine appears to be offline",
                                                                   timeout=20_000)
    page.get_by_role("tab", name="Installed").click()
    page.locator("#extensions_enabled").get_by_label("hook-recorder").uncheck()
    page.locator("#extensions_apply").click()
    expect(page.locator("#extensions_apply_result")).to_contain_text("Restarting", timeout=10_000)
    time.sleep(2)  # the old process is replaced
    ext_ui_server.wait_ready(timeout=120)
    listed = requests.get(ext_ui_server.url + "/sdapi/v1/extensions", timeout=30).json()
    # the built-in soft-inpainting stays listed and enabled; only the unchecked one is off
    assert {e["name"]: e["enabled"] for e in listed} == {"hook-recorder": False, "soft-inpainting": True}
    assert requests.get(ext_ui_server.url + "/hook-recorder/calls", timeout=10).status_code != 200 or \
        "calls" not in requests.get(ext_ui_server.url + "/hook-recorder/calls", timeout=10).text
