"""The Extras tab in a real browser: upload, upscale, see the result (extras.md §4)."""
import io
import os
import re

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page  # noqa: F401 (fixtures)


def test_extras_single_image_upscale(page, server, data_dir, tmp_path):  # noqa: F811
    source = tmp_path / "source.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(source)
    page.goto(server.url + "/")
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras_image input[type=file]").set_input_files(str(source))
    page.locator("#extras_upscaling_resize input[type=number]").fill("2")
    upscaler = page.locator("#extras_upscaler_1 input")
    upscaler.click()
    page.get_by_role("option", name="Lanczos", exact=True).click()
    page.locator("#extras_generate").click()
    expect(page.locator("#html_info_extras")).to_contain_text(
        "Postprocess upscale by: 2, Postprocess upscaler: Lanczos", timeout=60_000)
    image = page.locator("#extras_gallery img").first
    expect(image).to_be_visible(timeout=10_000)
    src = image.get_attribute("src")
    body = page.request.get(src if src.startswith("http") else server.url + src).body()
    assert Image.open(io.BytesIO(body)).size == (80, 56)  # ⌊40·2⌋₈ × ⌊30·2⌋₈
    # other tests share the folder: this job's file is the highest-numbered one
    saved = sorted(name for name in os.listdir(data_dir / "outputs" / "extras-images")
                   if re.fullmatch(r"\d{5}\.png", name))
    assert saved
    with Image.open(data_dir / "outputs" / "extras-images" / saved[-1]) as written:
        assert written.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
        assert written.size == (80, 56)
    # Send to inpaint: the img2img tab opens on the Inpaint mode with the result in its editor
    page.locator("#extras_send_to_inpaint").click()
    expect(page.locator("#img2maskimg canvas").first).to_be_visible(timeout=10_000)
    expect(page.locator("#img2img_mask_blur")).to_be_visible(timeout=10_000)


def test_png_info_sends_an_image_to_extras(page, server, data_dir, tmp_path):  # noqa: F811
    from PIL import PngImagePlugin
    source = tmp_path / "with-params.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse\nSteps: 3, Seed: 9")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(source, pnginfo=info)
    page.goto(server.url + "/")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(source))
    expect(page.locator("#pnginfo_generation_info textarea")).to_have_value(re.compile("a lighthouse"), timeout=90_000)
    page.locator("#pnginfo_send_to_extras").click()
    expect(page.locator("#extras_image img")).to_be_visible(timeout=10_000)
    upscaler = page.locator("#extras_upscaler_1 input")
    upscaler.click()
    page.get_by_role("option", name="Nearest", exact=True).click()
    page.locator("#extras_upscaling_resize input[type=number]").fill("2")
    page.locator("#extras_generate").click()
    expect(page.locator("#html_info_extras")).to_contain_text("Postprocess upscaler: Nearest", timeout=60_000)
    folder = data_dir / "outputs" / "extras-images"
    newest = max(folder.iterdir(), key=lambda p: p.stat().st_mtime)
    with Image.open(newest) as written:  # the source's generation text travels with the result
        assert written.size == (64, 48) and written.info["parameters"] == "a lighthouse\nSteps: 3, Seed: 9"
        assert written.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Nearest"
