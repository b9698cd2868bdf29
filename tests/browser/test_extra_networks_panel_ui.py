"""The extra-networks panel in a real browser: open Lora, click a card, the tag appears in the
prompt (and goes away on a second click), generate; the edit dialog saves `<stem>.json`."""
import json
import re

import pytest
from PIL import Image
from playwright.sync_api import expect
from safetensors.torch import save_file

from modules.models.loader import load_checkpoint
from tests import lora_fixtures as lf
from tests.browser.test_ui import browser, page, set_job  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def lora_file(data_dir):
    model = load_checkpoint(str(data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"))
    state, _ = lf.random_lora(model, seed=21)
    folder = data_dir / "models" / "Lora" / "styles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cardlora.safetensors"
    save_file(state, str(path), metadata={"ss_base_model_version": "sd_v1"})
    Image.new("RGB", (16, 16), (200, 30, 30)).save(folder / "cardlora.png")
    (folder / "cardlora.json").write_text(json.dumps({"activation text": "inkwash style", "preferred weight": 0.7}))
    return path


def test_lora_card_toggles_tag_and_generates(page, server, lora_file):  # noqa: F811
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-sd1"), timeout=120_000)  # the start-up load may still run
    set_job(page, "a lighthouse", steps=2, size=(64, 64))
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_lora_tab-button").click()
    page.locator("#txt2img_lora_extra_refresh").click()
    card = page.locator("#txt2img_lora_cards .extra-network-card[data-name='cardlora']")
    expect(card).to_be_visible(timeout=90_000)
    expect(card.locator("img")).to_have_attribute("src", re.compile(r"^/sd_extra_networks/thumb\?filename="))
    prompt = page.locator("#txt2img_prompt textarea")
    card.click()
    expect(prompt).to_have_value("a lighthouse <lora:cardlora:0.7> inkwash style", timeout=10_000)
    card.click()
    expect(prompt).to_have_value("a lighthouse", timeout=10_000)
    card.click()
    expect(prompt).to_have_value("a lighthouse <lora:cardlora:0.7> inkwash style", timeout=10_000)
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#txt2img_generation_info textarea")).to_have_value(
        re.compile(r'Lora hashes: "cardlora: [0-9a-f]{12}"'), timeout=10_000)

    # folder button filters by the sub-folder; the edit dialog writes the user metadata
    page.locator("#txt2img_lora_cards .extra-network-dirs button", has_text="styles").click()
    expect(page.locator("#txt2img_lora_extra_search input, #txt2img_lora_extra_search textarea").first) \
        .to_have_value(re.compile(r"styles/$"))
    card.locator(".card-edit").click()
    description = page.locator("#txt2img_extra_edit_description textarea")
    expect(description).to_be_visible(timeout=10_000)
    description.fill("red ink")
    page.locator("#txt2img_extra_edit_save").click()
    expect(page.locator("#txt2img_extra_networks_notice")).to_contain_text("Saved", timeout=10_000)
    saved = json.loads(lora_file.with_suffix(".json").read_text())
    assert saved["description"] == "red ink" and saved["activation text"] == "inkwash style"


@pytest.fixture(scope="module")
def embedding_file(data_dir):
    import torch
    folder = data_dir / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cardemb.pt"
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn(1, 32) * 0.01}}, path)
    return path


def test_ti_card_goes_to_last_focused_box_and_checkpoint_card_moves_the_dropdown(page, server, embedding_file):  # noqa: F811
    page.goto(server.url + "/")
    dropdown = page.locator("#setting_sd_model_checkpoint input")
    expect(dropdown).to_have_value(re.compile("tiny-sd1"), timeout=120_000)  # the start-up load may still run
    prompt, negative = page.locator("#txt2img_prompt textarea"), page.locator("#txt2img_neg_prompt textarea")
    prompt.fill("a lighthouse")
    negative.fill("ugly")
    page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
    page.locator("#txt2img_textual_inversion_tab-button").click()
    page.locator("#txt2img_textual_inversion_extra_refresh").click()
    card = page.locator("#txt2img_textual_inversion_cards .extra-network-card[data-name='cardemb']")
    expect(card).to_be_visible(timeout=90_000)
    negative.click()  # the last focused box is the negative prompt
    card.click()
    expect(negative).to_have_value("ugly cardemb", timeout=10_000)
    expect(prompt).to_have_value("a lighthouse")
    prompt.click()
    card.click()
    expect(prompt).to_have_value("a lighthouse cardemb", timeout=10_000)
    expect(negative).to_have_value("ugly cardemb")  # left as it was

    page.locator("#txt2img_checkpoints_tab-button").click()
    other = page.locator("#txt2img_checkpoints_cards .extra-network-card[data-name^='tiny-sd2-v']")
    expect(other).to_be_visible(timeout=90_000)
    other.click()
    expect(dropdown).to_have_value(re.compile("tiny-sd2-v"), timeout=60_000)
    page.locator("#txt2img_checkpoints_cards .extra-network-card[data-name^='tiny-sd1.']").click()
    expect(dropdown).to_have_value(re.compile("tiny-sd1"), timeout=60_000)
