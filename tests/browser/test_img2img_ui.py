"""The img2img tab in a real browser: upload and generate, draw a mask in Inpaint and generate,
Send to img2img from a txt2img result."""
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "init.png"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def open_img2img(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    page.locator("#tabs").get_by_role("tab", name="img2img", exact=True).first.click()
    page.locator("#img2img_prompt textarea").fill("a stone bridge")
    page.locator("#img2img_steps input[type=number]").fill("3")
    page.locator("#img2img_width input[type=number]").fill("64")
    page.locator("#img2img_height input[type=number]").fill("64")


def test_upload_generate_shows_image(page, server, picture):  # noqa: F811
    open_img2img(page, server)
    page.locator("#img2img_image input[type=file]").set_input_files(picture)
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=10_000)
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img").first).to_be_visible(timeout=120_000)
    expect(page.locator("#img2img_generation_info textarea")).to_have_value(
        re.compile(r"^a stone bridge\nSteps: 3, .*Denoising strength: 0\.75"), timeout=10_000)
    # Copy image to: inpaint gets the image and becomes the visible mode, with its controls
    page.locator("#img2img_copy_to_inpaint_from_img2img").click()
    expect(page.locator("#img2maskimg canvas").first).to_be_visible(timeout=10_000)
    expect(page.locator("#img2img_mask_blur")).to_be_visible(timeout=10_000)


@pytest.mark.full_ui
def test_draw_mask_in_inpaint_and_generate(page, server, picture):  # noqa: F811
    open_img2img(page, server)
    page.locator("#mode_img2img").get_by_role("tab", name="Inpaint", exact=True).click()
    page.locator("#img2maskimg input[type=file]").set_input_files(picture)
    canvas = page.locator("#img2maskimg canvas").first
    expect(canvas).to_be_visible(timeout=10_000)
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 10, cy - 10)
    page.mouse.down()
    for step in range(10):
        page.mouse.move(cx - 10 + 2 * step, cy - 10 + 2 * step)
    page.mouse.up()
    expect(page.locator("#img2img_mask_blur")).to_be_visible()
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img").first).to_be_visible(timeout=120_000)
    expect(page.locator("#img2img_generation_info textarea")).to_have_value(re.compile(r"Mask blur: 4"),
                                                                           timeout=10_000)


def test_send_txt2img_result_to_img2img(page, server):  # noqa: F811
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    page.locator("#txt2img_prompt textarea").fill("a windmill")
    page.locator("#txt2img_steps input[type=number]").fill("3")
    page.locator("#txt2img_width input[type=number]").fill("64")
    page.locator("#txt2img_height input[type=number]").fill("64")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=120_000)
    page.locator("#txt2img_send_to_img2img").click()
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=10_000)
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a windmill")
    expect(page.locator("#img2img_width input[type=number]")).to_have_value("64")
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_generation_info textarea")).to_have_value(re.compile(r"^a windmill\n"),
                                                                           timeout=60_000)
