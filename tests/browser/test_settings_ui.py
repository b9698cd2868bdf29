"""The Settings tab in a real browser: a change applied there survives a page reload, search finds
a setting on any page, quicksettings_list puts settings beside the checkpoint selector."""
import json
import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page  # noqa: F401 - shared fixtures
from tests.conftest import ServerProcess

QUICK = ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]


@pytest.fixture(scope="module")
def settings_server(tmp_path_factory):
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("settings-ui")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", seed=0)
    (root / "config.json").write_text(json.dumps({"quicksettings_list": QUICK}), encoding="utf8")
    proc = ServerProcess(root, "--api")
    proc.root = root
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def open_settings(page, server):
    page.goto(server.url + "/")
    page.locator("#tab_settings-button").click()
    expect(page.locator("#settings_submit")).to_be_visible(timeout=90_000)


def options(server):
    return requests.get(server.url + "/sdapi/v1/options", timeout=30).json()


def test_quicksettings_list_puts_settings_at_the_top(page, settings_server):  # noqa: F811
    page.goto(settings_server.url + "/")
    bar = page.locator("#quicksettings")
    for key in QUICK:
        expect(bar.locator(f"#setting_{key}")).to_be_visible(timeout=90_000)
        expect(page.locator(f"#setting_{key}")).to_have_count(1)  # left its settings page
    expect(bar.locator("#setting_CLIP_stop_at_last_layers")).to_contain_text("Clip skip")
    # a change there applies and saves at once
    bar.locator("#setting_sd_vae input").click()
    page.get_by_role("option", name="None", exact=True).click()
    expect(page.locator("#quicksettings_result")).to_contain_text("1 settings changed: sd_vae.", timeout=90_000)
    assert options(settings_server)["sd_vae"] == "None"
    assert json.loads((settings_server.root / "config.json").read_text(encoding="utf8"))["sd_vae"] == "None"


@pytest.mark.full_ui
def test_applied_settings_persist_across_a_page_reload(page, settings_server):  # noqa: F811
    open_settings(page, settings_server)
    page.locator("#settings_tab_saving-images").click()
    quality = page.locator("#setting_jpeg_quality input[type=number]")
    expect(quality).to_be_visible()
    quality.fill("91")
    quality.press("Tab")
    page.locator("#settings_tab_ui").click()
    send_seed = page.locator("#setting_send_seed input[type=checkbox]")
    expect(send_seed).to_be_checked()
    send_seed.uncheck()
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).to_contain_text(
        "2 settings changed: jpeg_quality, send_seed.", timeout=90_000)
    values = options(settings_server)
    assert values["jpeg_quality"] == 91 and values["send_seed"] is False

    page.reload()
    page.locator("#tab_settings-button").click()
    page.locator("#settings_tab_saving-images").click()
    expect(page.locator("#setting_jpeg_quality input[type=number]")).to_have_value("91", timeout=90_000)
    page.locator("#settings_tab_ui").click()
    expect(page.locator("#setting_send_seed input[type=checkbox]")).not_to_be_checked()


def test_a_reload_ui_badge_is_reported(page, settings_server):  # noqa: F811
    open_settings(page, settings_server)
    page.locator("#settings_tab_ui_gallery").click()
    page.locator("#setting_gallery_height textarea, #setting_gallery_height input").first.fill("30em")
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).to_contain_text(
        re.compile(r"1 settings changed: gallery_height\..*Reload UI.*gallery_height"), timeout=90_000)


def test_search_finds_a_setting_on_any_page(page, settings_server):  # noqa: F811
    open_settings(page, settings_server)
    first = page.locator("#setting_outdir_samples")  # first page: Paths for saving
    expect(first).to_be_visible()
    expect(page.locator("#setting_n_rows")).to_be_hidden()
    page.locator("#settings_search textarea, #settings_search input").first.press_sequentially("grid row count")
    expect(page.locator("#setting_n_rows")).to_be_visible(timeout=10_000)
    expect(first).to_be_hidden()
    expect(page.locator("#setting_send_seed")).to_be_hidden()
    # the key itself is found too
    box = page.locator("#settings_search textarea, #settings_search input").first
    box.press("Control+a")
    box.press_sequentially("eta_noise_seed_delta")
    expect(page.locator("#setting_eta_noise_seed_delta")).to_be_visible(timeout=10_000)
    expect(page.locator("#setting_n_rows")).to_be_hidden()
    box.press("Control+a")
    box.press("Backspace")  # an empty search: back to one page
    expect(first).to_be_visible(timeout=10_000)
    expect(page.locator("#setting_eta_noise_seed_delta")).to_be_hidden()
