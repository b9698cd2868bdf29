"""The Checkpoint Merger tab in a real browser: pick two models, set a block weight, merge."""
import json
import os
import re

import pytest
from playwright.sync_api import expect
from safetensors import safe_open
from safetensors.torch import load_file

from tests.browser.test_ui import browser, page  # noqa: F401 - shared fixtures
from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def merge_ui_server(tmp_path_factory):
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("merge-ui")
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    write_tiny_checkpoint("sd1", folder / "tiny-a.safetensors", seed=0)
    write_tiny_checkpoint("sd1", folder / "tiny-b.safetensors", seed=1)
    proc = ServerProcess(root, "--api")
    try:
        yield proc.wait_ready(), folder
    finally:
        proc.stop()


def choose(page, elem_id, pattern):
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=re.compile(pattern)).click()


def test_merge_two_models_with_a_block_weight(page, merge_ui_server):  # noqa: F811
    server, folder = merge_ui_server
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    page.get_by_role("tab", name="Checkpoint Merger").click()
    choose(page, "modelmerger_primary_model_name", r"^tiny-a")
    choose(page, "modelmerger_secondary_model_name", r"^tiny-b")
    page.locator("#modelmerger_custom_name textarea").fill("ui-merged")
    page.locator("#modelmerger_block_weights_accordion").get_by_text("Block weights").first.click()
    page.locator("#modelmerger_use_block_weights input").check()
    number = page.locator("#modelmerger_block_IN01 input[type=number]")
    number.fill("0.8")
    number.press("Enter")
    expected = ",".join(["0.3", "0.3", "0.8"] + ["0.3"] * 23)
    expect(page.locator("#modelmerger_block_weights textarea")).to_have_value(expected, timeout=10_000)
    page.locator("#modelmerger_merge").click()
    result = page.locator("#modelmerger_result")
    expect(result).to_contain_text("Checkpoint saved to", timeout=60_000)
    expect(result).to_contain_text(re.compile(r"ui-merged\.safetensors \[[0-9a-f]{10}\]"))

    # the new checkpoint is in the quicksettings list without a restart
    page.locator("#setting_sd_model_checkpoint input").click()
    expect(page.get_by_role("option", name=re.compile(r"^ui-merged\.safetensors \["))).to_be_visible(timeout=10_000)

    path = os.path.join(str(folder), "ui-merged.safetensors")
    out, a, b = load_file(path), load_file(str(folder / "tiny-a.safetensors")), load_file(str(folder / "tiny-b.safetensors"))
    for key, alpha in (("model.diffusion_model.input_blocks.1.0.in_layers.2.weight", 0.8),
                       ("model.diffusion_model.input_blocks.2.0.op.weight", 0.3)):
        if key in out:
            assert (out[key] - (a[key] * (1 - alpha) + b[key] * alpha)).abs().max() <= 1e-6, key
    recipe = json.loads(safe_open(path, "pt").metadata()["sd_merge_recipe"])
    assert recipe["block_weights_source"] == expected


def test_missing_secondary_model_is_a_one_line_failure(page, merge_ui_server):  # noqa: F811
    server, _folder = merge_ui_server
    page.goto(server.url + "/")
    page.get_by_role("tab", name="Checkpoint Merger").click()
    choose(page, "modelmerger_primary_model_name", r"^tiny-a")
    page.locator("#modelmerger_merge").click()
    expect(page.locator("#modelmerger_result")).to_contain_text("Merging requires a secondary model", timeout=90_000)
