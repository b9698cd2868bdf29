"""A real browser (Debian's Chromium driven by Playwright) against the real UI."""
import re
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed for the browser tests (apt-get install chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url + "/")
        yield page
        browser.close()


def test_generate_shows_image_in_gallery(page, server):
    page.locator("#txt2img_prompt textarea").fill("a lighthouse at dusk")
    page.locator("#txt2img_steps input[type=number]").fill("3")
    page.locator("#txt2img_width input[type=number]").fill("64")
    page.locator("#txt2img_height input[type=number]").fill("64")
    page.locator("#txt2img_generate").click()
    image = page.locator("#txt2img_gallery img").first
    expect(image).to_be_visible(timeout=60_000)
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"^a lighthouse at dusk\nSteps: 3, Sampler: Euler, "), timeout=10_000)
    # the served file is a PNG that still carries the infotext
    src = image.get_attribute("src")
    response = page.request.get(src if src.startswith("http") else server.url + src)
    assert response.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"parameters" in response.body()
