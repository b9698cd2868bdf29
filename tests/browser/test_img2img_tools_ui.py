"""In a real browser: the Extras gallery's Send to img2img / inpaint / extras, and img2img's
Interrogate buttons (no weights in the test data folder: a message naming the folder)."""
import pytest
import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page  # noqa: F401 (fixtures)


def _upscale_in_extras(page, source):
    page.get_by_role("tab", name="Extras").click(timeout=90_000)
    page.locator("#extras_image input[type=file]").set_input_files(str(source), timeout=90_000)
    page.locator("#extras_upscaling_resize input[type=number]").fill("2")
    page.locator("#extras_upscaler_1 input").click()
    page.get_by_role("option", name="Nearest", exact=True).click()
    page.locator("#extras_generate").click()
    expect(page.locator("#extras_gallery img").first).to_be_visible(timeout=60_000)


@pytest.mark.full_ui
def test_extras_gallery_sends_to_img2img_and_extras(page, server, tmp_path):  # noqa: F811
    source = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(source)
    page.goto(server.url + "/")
    _upscale_in_extras(page, source)
    page.locator("#extras_send_to_img2img").click()
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=60_000)
    page.locator("#img2img_detect_image_size_btn").click()  # the sent image is the 64×48 result
    expect(page.locator("#img2img_width input[type=number]")).to_have_value("64", timeout=60_000)
    expect(page.locator("#img2img_height input[type=number]")).to_have_value("48")
    page.get_by_role("tab", name="Extras").click(timeout=90_000)
    page.locator("#extras_send_to_extras").click()
    expect(page.locator("#extras_image img")).to_be_visible(timeout=60_000)


def test_interrogate_without_weights_says_which_folder(page, server, tmp_path):  # noqa: F811
    source = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(source)
    page.goto(server.url + "/")
    page.get_by_role("tab", name="img2img", exact=True).first.click(timeout=90_000)
    page.locator("#img2img_image input[type=file]").set_input_files(str(source), timeout=90_000)
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=60_000)
    page.locator("#img2img_prompt textarea").fill("kept prompt")
    page.locator("#deepbooru").click()
    expect(page.locator("#img2img_html_log")).to_contain_text("torch_deepdanbooru", timeout=90_000)
    expect(page.locator("#img2img_prompt textarea")).to_have_value("kept prompt")
