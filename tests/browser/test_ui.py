"""A real browser (Debian's Chromium driven by Playwright) against the real UI."""
import re
import shutil
import time

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ServerProcess

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def set_job(page, prompt=None, steps=None, size=None, batch_count=None):
    """Fill the txt2img fields a test cares about (None leaves a field as it is)."""
    if prompt is not None:
        page.locator("#txt2img_prompt textarea").fill(prompt)
    if steps is not None:
        page.locator("#txt2img_steps input[type=number]").fill(str(steps))
    if size is not None:
        page.locator("#txt2img_width input[type=number]").fill(str(size[0]))
        page.locator("#txt2img_height input[type=number]").fill(str(size[1]))
    if batch_count is not None:
        page.locator("#txt2img_batch_count input[type=number]").fill(str(batch_count))


def wait_until_sampling(server, job_no=0, timeout=90):
    """Block until the server's job is sampling batch `job_no` (0-based) past its first step. The
    server's own state is the fact to wait on: the page's progress text can lag by seconds on a
    loaded machine."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = requests.get(server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=10).json()["state"]
        if state["job_no"] >= job_no and state["sampling_step"] >= 1:
            return state
        time.sleep(0.2)
    raise AssertionError(f"no job reached batch {job_no + 1} sampling within {timeout} s")


# 150 steps at 512x512 with one torch thread lasts over a minute here: long enough that a click
# the page delivers late still lands while the job runs
SLOW_JOB = {"steps": 150, "size": (512, 512)}


def click_while_busy(page, selector):
    """Click a button while a job streams progress: the page's main thread is then so busy that
    Playwright's actionability checks (two stable animation frames) can starve; the DOM click event
    is what a user's click delivers."""
    page.locator(selector).dispatch_event("click", timeout=90_000)


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed for the browser tests (apt-get install chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("empty"), "--api")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def test_generate_shows_image_in_gallery(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    set_job(page, "a lighthouse at dusk", steps=3, size=(64, 64))
    page.locator("#txt2img_generate").click()
    image = page.locator("#txt2img_gallery img").first
    expect(image).to_be_visible(timeout=60_000)
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"^a lighthouse at dusk\nSteps: 3, Sampler: DPM\+\+ 2M, Schedule type: Karras, "), timeout=10_000)
    expect(page.locator("#txt2img_html_log")).to_contain_text(re.compile(r"Time taken: \d+\.\d\d sec\."))
    # the served file is a PNG that still carries the infotext
    src = image.get_attribute("src")
    body = page.request.get(src if src.startswith("http") else server.url + src).body()
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and b"parameters" in body


def test_without_a_model_the_ui_says_where_to_put_one(page, empty_server):
    page.goto(empty_server.url + "/")
    expect(page.locator("#model_notice")).to_contain_text("models/Stable-diffusion", timeout=90_000)
    page.locator("#txt2img_prompt textarea").fill("anything")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_html_log")).to_contain_text("No checkpoint is loaded", timeout=90_000)
    response = requests.post(empty_server.url + "/sdapi/v1/txt2img", json={"prompt": "x"}, timeout=30)
    assert response.status_code == 503 and "models/Stable-diffusion" in response.json()["detail"]


@pytest.mark.full_ui
def test_progress_and_interrupt_button(page, server):
    page.goto(server.url + "/")
    set_job(page, "a slow one", **SLOW_JOB)
    page.locator("#txt2img_generate").click()
    wait_until_sampling(server)  # the page's progress text is checked in the Skip test
    click_while_busy(page, "#txt2img_interrupt")
    expect(page.locator("#txt2img_html_log")).to_contain_text("Interrupted", timeout=90_000)


def test_token_counter_follows_the_prompt(page, server):
    page.goto(server.url + "/")
    box = page.locator("#txt2img_prompt textarea")
    box.fill("a photograph of an astronaut riding a horse")
    expect(page.locator("#txt2img_token_counter")).to_contain_text("8/75", timeout=15_000)
    box.fill(" ".join(["horse"] * 80))
    expect(page.locator("#txt2img_token_counter")).to_contain_text("80/150", timeout=15_000)
    page.locator("#txt2img_neg_prompt textarea").fill("blurry, ugly")
    expect(page.locator("#txt2img_negative_token_counter")).to_contain_text("3/75", timeout=15_000)


def test_png_info_send_to_txt2img(page, server, tmp_path):
    import base64
    body = {"prompt": "a red kite over dunes", "negative_prompt": "fog", "seed": 4242, "steps": 7,
            "sampler_name": "Euler a", "width": 96, "height": 64, "cfg_scale": 5.5}
    response = requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=60).json()
    png = tmp_path / "kite.png"
    png.write_bytes(base64.b64decode(response["images"][0]))

    page.goto(server.url + "/")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    expect(page.locator("#pnginfo_generation_info textarea")).to_have_value(
        re.compile(r"^a red kite over dunes\nNegative prompt: fog\nSteps: 7, Sampler: Euler a"), timeout=20_000)
    page.locator("#pnginfo_send_to_txt2img").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a red kite over dunes", timeout=10_000)
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("fog")
    expect(page.locator("#txt2img_seed input")).to_have_value("4242")
    expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("7")
    expect(page.locator("#txt2img_width input[type=number]")).to_have_value("96")
    expect(page.locator("#txt2img_height input[type=number]")).to_have_value("64")
    expect(page.locator("#txt2img_cfg_scale input[type=number]")).to_have_value("5.5")
    expect(page.locator("#txt2img_sampling input")).to_have_value("Euler a")


def test_styles_and_save_button(page, server, data_dir):
    page.goto(server.url + "/")
    page.locator("#txt2img_styles_edit").click()  # open the accordion
    name = page.locator("#txt2img_edit_style_name input")
    name.fill("Cinematic")
    name.press("Enter")
    page.locator("#txt2img_edit_style_prompt textarea").fill("cinematic still of {prompt}, film grain")
    page.locator("#txt2img_edit_style_save").click()
    expect(page.locator("#txt2img_edit_style_message")).to_contain_text("Saved style Cinematic", timeout=10_000)
    assert "Cinematic" in (data_dir / "styles.csv").read_text(encoding="utf-8-sig")

    styles_box = page.locator("#txt2img_styles input")
    styles_box.click()
    page.get_by_role("option", name="Cinematic").click()
    set_job(page, "a harbor", steps=2, size=(64, 64))
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_generation_info textarea")).to_have_value(
        re.compile(r"^cinematic still of a harbor, film grain\n"), timeout=60_000)
    assert [s["name"] for s in requests.get(server.url + "/sdapi/v1/prompt-styles", timeout=10).json()] == ["Cinematic"]

    page.locator("#save_txt2img").click()
    log_csv = data_dir / "log" / "images" / "log.csv"

    def logged() -> str:
        return log_csv.read_text(encoding="utf8") if log_csv.exists() else ""

    deadline = time.time() + 20
    while "cinematic still of a harbor" not in logged() and time.time() < deadline:
        page.wait_for_timeout(200)  # the Save click is handled asynchronously
    assert "cinematic still of a harbor, film grain" in logged()


@pytest.mark.full_ui
def test_hires_fix_variation_seed_and_read_parameters(page, server):
    page.goto(server.url + "/")
    set_job(page, "a quiet bay", steps=2, size=(64, 64))
    page.locator("#txt2img_seed input").fill("77")
    page.locator("#txt2img_hr").click()  # open the accordion
    page.locator("#txt2img_enable_hr input").check()
    page.locator("#txt2img_hr_scale input[type=number]").fill("1.5")
    page.locator("#txt2img_subseed_show input").check()
    page.locator("#txt2img_subseed input").fill("5")
    page.locator("#txt2img_subseed_strength input[type=number]").fill("0.25")
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"Variation seed: 5, Variation seed strength: 0.25, "
                                          r"Denoising strength: 0.7.*Hires upscale: 1.5"), timeout=60_000)
    text = info.input_value()

    # paste that infotext back: the hires section and the variation fields are filled from it
    page.reload()
    page.locator("#txt2img_prompt textarea").fill(text)
    page.locator("#txt2img_paste").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a quiet bay", timeout=10_000)
    expect(page.locator("#txt2img_seed input")).to_have_value("77")
    page.locator("#txt2img_hr").click()
    expect(page.locator("#txt2img_enable_hr input")).to_be_checked()
    expect(page.locator("#txt2img_hr_scale input[type=number]")).to_have_value("1.5")
    expect(page.locator("#txt2img_subseed input")).to_have_value("5")


def test_pasted_settings_become_per_job_overrides(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#txt2img_override_settings")).to_be_hidden()
    page.locator("#txt2img_prompt textarea").fill(
        "a red kite\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Clip skip: 2, RNG: CPU")
    page.locator("#txt2img_paste").click()
    overrides = page.locator("#txt2img_override_settings")
    expect(overrides).to_be_visible(timeout=10_000)
    expect(overrides).to_contain_text("Clip skip: 2")
    expect(overrides).to_contain_text("RNG: CPU")
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_generation_info textarea")
    expect(info).to_have_value(re.compile(r"^a red kite\nSteps: 2, Sampler: Euler, .*Seed: 5, Size: 64x64, "
                                          r".*Clip skip: 2, RNG: CPU"), timeout=60_000)
    # the job's overrides never touch the saved settings
    saved = requests.get(server.url + "/sdapi/v1/options", timeout=10).json()
    assert saved["CLIP_stop_at_last_layers"] == 1 and saved["randn_source"] == "GPU"


def test_pasted_names_this_install_lacks_get_a_clear_message(page, server):
    page.goto(server.url + "/")
    page.locator("#txt2img_prompt textarea").fill(
        "a red kite\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Denoising strength: 0.5, "
        "Hires upscale: 1.5, Hires upscaler: 4x-UltraSharp")
    page.locator("#txt2img_paste").click()
    page.locator("#txt2img_hr").click()
    expect(page.locator("#txt2img_hr_upscaler input")).to_have_value("4x-UltraSharp", timeout=10_000)
    page.locator("#txt2img_generate").click()
    # the job's own check names the problem and the valid choices (not Gradio's bare "Error")
    expect(page.locator("#txt2img_html_log")).to_contain_text("Upscaler '4x-UltraSharp' not found", timeout=90_000)
    expect(page.locator("#txt2img_html_log")).to_contain_text("Lanczos")


def test_refiner_tiling_and_skip_buttons(page, server):
    page.goto(server.url + "/")
    set_job(page, "a tiled floor", steps=4, size=(64, 64))
    page.locator("#txt2img_tiling input").check()
    page.locator("#txt2img_refiner").click()
    page.locator("#txt2img_enable_refiner input").check()
    refiner = page.locator("#txt2img_refiner_checkpoint input")
    refiner.click()
    page.get_by_role("option", name=re.compile(r"^tiny-sd2-v")).click()
    page.locator("#txt2img_refiner_switch_at input[type=number]").fill("0.5")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_generation_info textarea")).to_have_value(
        re.compile(r"Tiling: True.*Refiner: tiny-sd2-v \[[0-9a-f]{10}\], Refiner switch at: 0.5"), timeout=60_000)

    # Skip drops the running batch and goes on with the next one
    page.locator("#txt2img_tiling input").uncheck()
    page.locator("#txt2img_enable_refiner input").uncheck()
    set_job(page, batch_count=2, **SLOW_JOB)
    box = page.locator("#txt2img_prompt textarea")
    box.press("Control+Enter")  # the prompt box's shortcut for Generate
    assert wait_until_sampling(server)["job_no"] == 0
    click_while_busy(page, "#txt2img_skip")
    wait_until_sampling(server, job_no=1)  # Skip moved the job on to batch 2
    expect(page.get_by_text(re.compile(r"Batch 2 out of 2")).first).to_be_visible(timeout=60_000)
    # Escape in the prompt box interrupts (a dispatched key event: the busy page starves press())
    box.dispatch_event("keydown", {"key": "Escape", "bubbles": True})
    expect(page.locator("#txt2img_html_log")).to_contain_text("Interrupted", timeout=90_000)
    assert box.input_value() == "a tiled floor"  # no newline typed by Ctrl+Enter
