"""POST /sdapi/v1/merge-checkpoints over real HTTP against a real server on its own data folder."""
import hashlib
import json
import threading

import pytest
import requests
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import ServerProcess

URL = "/sdapi/v1/merge-checkpoints"


@pytest.fixture(scope="module")
def merge_server(tmp_path_factory):
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("merge-data")
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    write_tiny_checkpoint("sd1", folder / "tiny-a.safetensors", seed=0)
    write_tiny_checkpoint("sd1", folder / "tiny-b.safetensors", seed=1)
    write_tiny_checkpoint("sdxl", folder / "tiny-xl.safetensors", seed=0)
    # two wider files, so that a merge lasts long enough to be watched on /progress
    for name, seed in (("wide-a", 0), ("wide-b", 1)):
        g = torch.Generator().manual_seed(seed)
        save_file({f"model.diffusion_model.input_blocks.{i % 12}.0.w{i}": torch.randn(1024, 1024, generator=g)
                   for i in range(24)}, str(folder / f"{name}.safetensors"))
    proc = ServerProcess(root, "--api")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def post(server, body):
    return requests.post(server.url + URL, json=body, timeout=120)


def test_block_weighted_merge_is_listed_loads_and_generates(merge_server):
    values = [round(0.04 * i, 2) for i in range(25)]
    response = post(merge_server, {"primary_model_name": "tiny-a", "secondary_model_name": "tiny-b",
                                   "block_weights": ",".join(map(str, values)), "custom_name": "api-merged"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"info", "filename", "title", "sha256"}
    assert body["filename"].endswith("api-merged.safetensors") and body["info"] == f"Checkpoint saved to {body['filename']}"
    assert hashlib.sha256(open(body["filename"], "rb").read()).hexdigest() == body["sha256"]
    assert body["title"] == f"api-merged.safetensors [{body['sha256'][:10]}]"
    titles = [m["title"] for m in requests.get(merge_server.url + "/sdapi/v1/sd-models", timeout=30).json()]
    assert body["title"] in titles  # listed without a refresh
    recipe = json.loads(safe_open(body["filename"], "pt").metadata()["sd_merge_recipe"])
    assert recipe["block_weights_source"] == ",".join(map(str, values))
    assert recipe["block_weights"]["input_blocks"]["3"] == 0.12
    # spot-check one key against the formula: IN01 gets values[1]
    out = load_file(body["filename"])
    a = load_file(body["filename"].replace("api-merged", "tiny-a"))
    b = load_file(body["filename"].replace("api-merged", "tiny-b"))
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    assert (out[key] - (a[key] * (1 - values[1]) + b[key] * values[1])).abs().max() <= 1e-6

    generated = requests.post(merge_server.url + "/sdapi/v1/txt2img", timeout=120, json={
        "prompt": "a merged model", "steps": 2, "width": 64, "height": 64,
        "override_settings": {"sd_model_checkpoint": body["title"]}})
    assert generated.status_code == 200, generated.text
    assert len(generated.json()["images"]) == 1


def test_block_alphas_form_and_half(merge_server):
    response = post(merge_server, {
        "primary_model_name": "tiny-a", "secondary_model_name": "tiny-b", "custom_name": "api-alphas",
        "block_alphas": {"input_blocks": "0:0.5, 1:0.25", "out": "0:0.5, 2:0.3", "base_alpha": 0.5},
        "text_encoder_alpha": 0.2, "save_as_half": True})
    assert response.status_code == 200, response.text
    out = load_file(response.json()["filename"])
    assert {t.dtype for t in out.values() if t.is_floating_point()} == {torch.float16}


def test_merge_progress_shows_on_the_progress_route(merge_server):
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(requests.get(merge_server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=30).json())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        response = post(merge_server, {"primary_model_name": "wide-a", "secondary_model_name": "wide-b",
                                       "multiplier": 0.5, "custom_name": "wide-merged"})
    finally:
        done.set()
        watcher.join()
    assert response.status_code == 200, response.text
    merging = [s for s in seen if s["state"]["job"] == "model-merge"]
    assert merging, seen[-3:]
    assert any(s["textinfo"] for s in merging)


@pytest.mark.parametrize("body, status, fragment", [
    ({"primary_model_name": "nope", "secondary_model_name": "tiny-b"}, 422, "primary_model_name: checkpoint 'nope' not found; valid: "),
    ({"primary_model_name": "tiny-a", "secondary_model_name": "tiny-xl"}, 422, "mismatched families: A is sd1, B is sdxl"),
    ({"primary_model_name": "tiny-a", "secondary_model_name": "tiny-b", "block_weights": "0.5,0.5"}, 422,
     "block_weights: 2 values given; SD1/SD2 takes 25 or 26"),
    ({"primary_model_name": "tiny-a", "interp_method": "Weighted sum"}, 422, "requires a secondary model"),
    ({"primary_model_name": "tiny-a", "secondary_model_name": "tiny-b", "bake_in_vae": "missing.vae.pt"}, 422,
     "bake_in_vae: VAE 'missing.vae.pt' not found"),
    ({"primary_model_name": "tiny-a", "secondary_model_name": "tiny-b", "block_alphas": {"input_blocks": "12:0.5"}}, 422,
     "input_blocks: SD1/SD2 has no index 12"),
])
def test_bad_requests_are_422_with_the_reason(merge_server, body, status, fragment):
    response = post(merge_server, body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]
    if "valid: " in fragment:
        assert "tiny-a.safetensors" in response.json()["detail"]


def test_unknown_field_and_method_are_422(merge_server):
    assert post(merge_server, {"primary_model_name": "tiny-a", "interp_method": "Sum"}).status_code == 422
    assert post(merge_server, {"primary_model_name": "tiny-a", "multipler": 0.5}).status_code == 422
