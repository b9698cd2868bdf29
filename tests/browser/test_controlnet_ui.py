"""The ControlNet accordion in a real browser: upload an image into unit 0, pick Control Type
Canny, generate: the image and the detected map appear, with the unit's infotext; Read parameters
pastes a `ControlNet 0` line back into the unit."""
import re

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page, set_job  # noqa: F401 (fixtures)
from tests.controlnet_models import write_tiny_controlnets

UNIT = "#txt2img_controlnet_ControlNet-0"


@pytest.fixture(scope="module")
def cn_ui_server(server, data_dir):
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    requests.post(server.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd1"}, timeout=300)
    return server


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    path = tmp_path_factory.mktemp("cn") / "square.png"
    x = np.zeros((64, 64, 3), dtype=np.uint8)
    x[16:48, 16:48] = 255
    Image.fromarray(x).save(path)
    return str(path)


def open_accordion(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-sd1"), timeout=90_000)
    page.locator("#txt2img_controlnet").get_by_text(re.compile("^ControlNet v1.1.455")).first.click()
    expect(page.locator(f"{UNIT}_controlnet_enable_checkbox")).to_be_visible(timeout=90_000)


def test_upload_canny_generate_shows_the_detected_map(page, cn_ui_server, square):  # noqa: F811
    messages = []
    page.on("console", lambda m: messages.append(m.text) if m.type in ("error", "warning") else None)
    try:
        upload_canny_generate(page, cn_ui_server, square)
    except AssertionError:
        print("SERVER LOG", cn_ui_server.output()[-4000:], "CONSOLE", messages[-20:])  # what the server said, for the failure report
        raise


def upload_canny_generate(page, cn_ui_server, square):  # noqa: F811
    open_accordion(page, cn_ui_server)
    set_job(page, prompt="a box", steps=3, size=(64, 64))
    page.locator(f"{UNIT}_input_image input[type=file]").set_input_files(square)
    expect(page.locator(f"{UNIT}_controlnet_enable_checkbox input")).to_be_checked(timeout=90_000)  # upload ticks Enable
    page.locator(f"{UNIT}_controlnet_type_filter_radio").get_by_label("Canny", exact=True).check()
    expect(page.locator(f"{UNIT}_controlnet_preprocessor_dropdown input")).to_have_value("canny", timeout=90_000)
    expect(page.locator(f"{UNIT}_controlnet_model_dropdown input")).to_have_value("tiny_sd15_canny [e3b0c442]", timeout=90_000)
    expect(page.locator(f"{UNIT}_controlnet_threshold_A_slider")).to_be_visible(timeout=60_000)  # Low Threshold
    page.locator(f"{UNIT}_controlnet_preprocessor_resolution_slider input[type=number]").fill("64")
    page.locator(f"{UNIT}_controlnet_preprocessor_resolution_slider input[type=number]").press("Enter")
    page.locator(f"{UNIT}_controlnet_trigger_preprocessor").click()  # 💥 preview
    expect(page.locator(f"{UNIT}_preview_image img")).to_be_visible(timeout=90_000)
    page.wait_for_timeout(500)  # the unit's state follows its controls' change events
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img")).to_have_count(2, timeout=120_000)  # image + detected map
    expect(page.locator("#txt2img_generation_info textarea")).to_have_value(
        re.compile(r'ControlNet 0: "Module: canny, Model: tiny_sd15_canny \[e3b0c442\], Weight: 1\.0'),
        timeout=90_000)


def test_read_parameters_fills_the_unit(page, cn_ui_server):  # noqa: F811
    open_accordion(page, cn_ui_server)
    page.locator("#txt2img_prompt textarea").fill(
        'a box\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64, ControlNet 0: "Module: canny, '
        'Model: tiny_sd15_canny [e3b0c442], Weight: 0.55, Resize Mode: Resize and Fill, Processor Res: 256, '
        'Threshold A: 90, Threshold B: 180, Guidance Start: 0.1, Guidance End: 0.8, Pixel Perfect: False, '
        'Control Mode: My prompt is more important"')
    page.locator("#txt2img_paste").click()
    expect(page.locator(f"{UNIT}_controlnet_enable_checkbox input")).to_be_checked(timeout=90_000)
    expect(page.locator(f"{UNIT}_controlnet_preprocessor_dropdown input")).to_have_value("canny")
    expect(page.locator(f"{UNIT}_controlnet_model_dropdown input")).to_have_value("tiny_sd15_canny [e3b0c442]", timeout=90_000)
    expect(page.locator(f"{UNIT}_controlnet_control_weight_slider input[type=number]")).to_have_value("0.55")
    expect(page.locator(f"{UNIT}_controlnet_ending_control_step_slider input[type=number]")).to_have_value("0.8")
    expect(page.locator(f"{UNIT}_controlnet_control_mode_radio input[value='My prompt is more important']")
           ).to_be_checked()
    expect(page.locator(f"{UNIT}_controlnet_resize_mode_radio input[value='Resize and Fill']")).to_be_checked()
