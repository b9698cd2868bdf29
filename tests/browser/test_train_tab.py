"""The Train tab in a real browser: create an embedding, train it 10 steps, see progress, the loss
plot and the result."""
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.test_ui import browser, page  # noqa: F401 (fixtures)


@pytest.fixture
def dataset(tmp_path, data_dir):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(tmp_path / f"{i:03d}-a red fox.png")
    yield tmp_path
    for path in (data_dir / "embeddings").glob("uitrain*"):
        path.unlink()
    shutil.rmtree(data_dir / "textual_inversion", ignore_errors=True)


def test_create_and_train_an_embedding(page, server, dataset):  # noqa: F811
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    page.get_by_role("tab", name="Train").first.click()
    page.locator("#train_new_embedding_name textarea").fill("uitrain")
    page.locator("#train_overwrite_old_embedding input").check()
    page.locator("#train_create_embedding").click()
    expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"Created: .*uitrain\.pt"), timeout=90_000)

    page.locator("#train_tabs").get_by_role("tab", name="Train", exact=True).click()
    expect(page.locator("#train_embedding input")).to_have_value("uitrain")
    page.locator("#train_embedding_learn_rate textarea").fill("0.05")
    page.locator("#train_dataset_directory textarea").fill(str(dataset))
    page.locator("#train_training_width input[type=number]").fill("64")
    page.locator("#train_training_height input[type=number]").fill("64")
    page.locator("#train_steps input").fill("10")
    page.locator("#train_create_image_every input").fill("5")
    page.locator("#train_save_embedding_every input").fill("0")
    page.locator("#train_train_embedding").click()
    seen = set()
    deadline = time.time() + 90
    while time.time() < deadline and "Training finished" not in page.locator("#ti_output textarea").input_value():
        seen.add(page.locator("#ti_progress").inner_text())
        time.sleep(0.05)
    seen.add(page.locator("#ti_progress").inner_text())
    # while it runs: "train-embedding: step N of 10 — ETA …" and the loss; at the end the last step's
    assert any(re.search(r"Loss: \d\.\d{7}", text) and re.search(r"Step: \d+", text) for text in seen), seen
    expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"^Training finished at 10 steps"), timeout=90_000)
    expect(page.locator("#ti_progress")).to_contain_text("Training finished at 10 steps")
    expect(page.locator("#ti_progress")).to_contain_text("Step: 10")
    expect(page.locator("#ti_error")).to_have_text("")
    # the loss plot drew the ten points, the gallery holds the previews of steps 5 and 10
    expect(page.locator("#train_loss_plot canvas, #train_loss_plot svg").first).to_be_visible(timeout=10_000)
    expect(page.locator("#ti_gallery img")).to_have_count(2, timeout=10_000)


def _set_size_and_steps(page, steps, image_every):
    page.locator("#train_dataset_directory textarea").fill(str(page.dataset))
    page.locator("#train_training_width input[type=number]").fill("64")
    page.locator("#train_training_height input[type=number]").fill("64")
    page.locator("#train_steps input").fill(str(steps))
    page.locator("#train_create_image_every input").fill(str(image_every))
    page.locator("#train_save_embedding_every input").fill("0")


def test_create_and_train_a_hypernetwork(page, server, dataset, data_dir):  # noqa: F811
    import requests
    folder = data_dir / "models" / "hypernetworks"
    try:
        page.goto(server.url + "/")
        expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
        page.get_by_role("tab", name="Train").first.click()
        page.locator("#train_tabs").get_by_role("tab", name="Create hypernetwork").click()
        page.locator("#train_new_hypernetwork_name textarea").fill("uihn")
        page.locator("#train_overwrite_old_hypernetwork input").check()
        page.locator("#create_hypernetwork").click()
        expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"Created: .*uihn\.pt"), timeout=90_000)
        assert (folder / "uihn.pt").exists()
        # the tiny model's attention widths are 32 and 16, which the Modules boxes do not offer
        r = requests.post(server.url + "/sdapi/v1/create/hypernetwork", timeout=60,
                          json={"name": "uihn32", "enable_sizes": [32, 16], "overwrite_old": True})
        assert r.status_code == 200, r.text

        page.locator("#train_tabs").get_by_role("tab", name="Train", exact=True).click()
        expect(page.locator("#train_hypernetwork input")).to_have_value("uihn")
        page.locator("#train_hypernetwork input").fill("uihn32")
        page.locator("#train_hypernetwork input").press("Enter")
        page.locator("#train_hypernetwork_learn_rate textarea").fill("0.001")
        page.locator("#train_template_file input").fill("hypernetwork.txt")
        page.locator("#train_template_file input").press("Enter")
        page.dataset = dataset
        _set_size_and_steps(page, 4, 2)
        page.locator("#train_train_hypernetwork").click()
        expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"^Training finished at 4 steps"),
                                                                  timeout=90_000)
        expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"Hypernetwork saved to .*uihn32\.pt"))
        expect(page.locator("#ti_error")).to_have_text("")
        expect(page.locator("#ti_gallery img")).to_have_count(2, timeout=10_000)
        # the A1111-width file does not fit the tiny model: a message, not a crash
        page.locator("#train_hypernetwork input").fill("uihn")
        page.locator("#train_hypernetwork input").press("Enter")
        page.locator("#train_train_hypernetwork").click()
        expect(page.locator("#ti_error")).to_contain_text("match no attention input", timeout=90_000)
    finally:
        for path in folder.glob("uihn*"):
            path.unlink()


@pytest.fixture
def lora_dataset(tmp_path, data_dir):
    folder = tmp_path / "2_sks fox"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(folder / "a.png")
    (folder / "a.txt").write_text("a photo of sks fox")
    yield tmp_path
    for path in (data_dir / "models" / "Lora").glob("uilora*"):
        path.unlink()
    shutil.rmtree(data_dir / "train_states", ignore_errors=True)


def test_train_a_lora(page, server, lora_dataset, data_dir):  # noqa: F811
    import requests
    page.goto(server.url + "/")
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(re.compile("tiny-"), timeout=90_000)
    page.get_by_role("tab", name="Train").first.click()
    page.locator("#train_tabs").get_by_role("tab", name="Train LoRA").click()
    page.locator("#lora_train_data_dir textarea").fill(str(lora_dataset))
    page.locator("#lora_output_name textarea").fill("uilora")
    page.locator("#lora_network_dim input").fill("4")
    page.locator("#lora_resolution textarea").fill("64")
    page.locator("#lora_max_train_steps input").fill("6")
    page.locator("#lora_unet_lr input").fill("0.001")
    page.locator("#lora_seed input").fill("1")
    page.locator("#lora_train").click()
    path = data_dir / "models" / "Lora" / "uilora.safetensors"
    expect(page.locator("#ti_output textarea")).to_have_value(re.compile(r"^Training finished at 6 steps"),
                                                              timeout=120_000)
    expect(page.locator("#ti_output textarea")).to_have_value(re.compile(re.escape(str(path))))
    expect(page.locator("#ti_error")).to_have_text("")
    expect(page.locator("#ti_progress")).to_contain_text("Step: 6")
    expect(page.locator("#train_loss_plot canvas, #train_loss_plot svg").first).to_be_visible(timeout=10_000)
    assert path.exists()
    names = [item["name"] for item in requests.get(server.url + "/sdapi/v1/loras", timeout=30).json()]
    assert "uilora" in names
