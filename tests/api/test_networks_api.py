"""LoRA and hypernetwork routes and tags over real HTTP (networks.md §9, api.md §12)."""
import base64
import hashlib
import io
import json

import numpy as np
import requests
import torch
import webuiapi
from safetensors.torch import save_file

from modules.models.loader import load_checkpoint
from tests import lora_fixtures as lf

SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler",
         "override_settings": {"sd_model_checkpoint": "tiny-sd1"}}


def pixels(response: dict):
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response["images"][0]))))


def api(server, method, path, body=None):
    return requests.request(method, server.url + "/sdapi/v1" + path, json=body, timeout=120)


def make_lora(data_dir, name, metadata=None):
    model = load_checkpoint(str(data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"))
    state, _ = lf.random_lora(model, seed=11)
    folder = data_dir / "models" / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file(state, str(path), metadata=metadata)
    return path


def test_loras_list_refresh_and_generate(server, data_dir):
    path = make_lora(data_dir, "httplora", {"ss_output_name": "httpalias", "ss_base_model_version": "sd_v1"})
    assert api(server, "POST", "/refresh-loras").json() is None
    items = {item["name"]: item for item in api(server, "GET", "/loras").json()}
    item = items["httplora"]
    assert item["alias"] == "httpalias" and item["path"] == str(path)
    assert item["metadata"]["ss_base_model_version"] == "sd_v1"

    plain = api(server, "POST", "/txt2img", {"prompt": "a cat", **SMALL}).json()
    tagged = api(server, "POST", "/txt2img", {"prompt": "a cat <lora:httpalias:0.8>", **SMALL}).json()
    data = path.read_bytes()
    digest = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    info = tagged["info"]
    assert f'Lora hashes: \\"httpalias: {digest}\\"' in info or f'"httpalias: {digest}"' in info
    assert not np.array_equal(pixels(tagged), pixels(plain))
    again = api(server, "POST", "/txt2img", {"prompt": "a cat", **SMALL}).json()
    assert np.array_equal(pixels(again), pixels(plain))  # the LoRA left nothing behind

    missing = api(server, "POST", "/txt2img", {"prompt": "a cat <lora:nowhere:1>", **SMALL}).json()
    assert "Lora not found: nowhere" in missing["info"]


def test_webuiapi_client_sees_loras(server, data_dir):
    make_lora(data_dir, "clientlora")
    client = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    assert api(server, "POST", "/refresh-loras").status_code == 200
    assert "clientlora" in [item["name"] for item in client.get_loras()]


def test_hypernetworks_listed_and_applied(server, data_dir):
    folder = data_dir / "models" / "hypernetworks"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(lf.hypernetwork_dict((32, 16), seed=3, name="hnhttp"), str(folder / "hnhttp.pt"))
    plain = api(server, "POST", "/txt2img", {"prompt": "a cat", **SMALL}).json()
    tagged = api(server, "POST", "/txt2img", {"prompt": "a cat <hypernet:hnhttp:1>", **SMALL}).json()
    assert not np.array_equal(pixels(tagged), pixels(plain))
    zero = api(server, "POST", "/txt2img", {"prompt": "a cat <hypernet:hnhttp:0>", **SMALL}).json()
    assert np.array_equal(pixels(zero), pixels(plain))
    listed = webuiapi.WebUIApi(host="127.0.0.1", port=server.port).get_hypernetworks()
    assert {"name": "hnhttp", "path": str(folder / "hnhttp.pt")} in listed


def card_route(server, route, **params):
    return requests.get(f"{server.url}/sd_extra_networks/{route}", params=params, timeout=30)


def test_card_routes_metadata_cover_and_single_card(server, data_dir):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 200, 30)).save(buffer, format="PNG")
    cover = buffer.getvalue()
    # no ss_* keys: the version stays Unknown, so the card is listed whatever model is loaded
    make_lora(data_dir, "coverlora", {"modelspec.title": "Cover Lora", "ssmd_cover_images":
                                      json.dumps(["", base64.b64encode(cover).decode()])})
    make_lora(data_dir, "barelora")
    assert api(server, "POST", "/refresh-loras").status_code == 200

    answer = card_route(server, "metadata", page="lora", item="coverlora")
    assert answer.status_code == 200
    assert answer.json() == {"metadata": '{\n    "modelspec.title": "Cover Lora"\n}'}  # covers left out
    assert card_route(server, "metadata", page="lora", item="barelora").json() == {}

    image = card_route(server, "cover-images", page="lora", item="coverlora", index=1)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == cover
    for item, index in (("coverlora", 0), ("coverlora", 5), ("barelora", 0)):
        missing = card_route(server, "cover-images", page="lora", item=item, index=index)
        assert missing.status_code == 404 and f"no cover image {index}" in missing.json()["detail"]

    card = card_route(server, "get-single-card", page="lora", tabname="img2img", name="coverlora")
    assert card.status_code == 200
    html = card.json()["html"]
    assert html.startswith("<div class='extra-network-card' data-page='lora' data-name='coverlora'")
    assert "/sd_extra_networks/cover-images?page=lora&amp;item=coverlora&amp;index=1" in html  # its cover
    assert "card-metadata" in html and "#img2img_extra_networks_action" in html
    assert "card-metadata" not in card_route(server, "get-single-card", page="lora", tabname="txt2img",
                                             name="barelora").json()["html"]

    for route, params in (("metadata", {"page": "lora", "item": "nowhere"}),
                          ("cover-images", {"page": "lora", "item": "nowhere"}),
                          ("get-single-card", {"page": "lora", "tabname": "txt2img", "name": "nowhere"})):
        unknown = card_route(server, route, **params)
        assert unknown.status_code == 404
        assert unknown.json()["detail"] == "The lora page lists no item 'nowhere' (press Refresh after adding files)"
    page = card_route(server, "metadata", page="styles", item="coverlora")
    assert page.status_code == 404 and page.json()["detail"].startswith("No extra networks page 'styles'")
    tab = card_route(server, "get-single-card", page="lora", tabname="<x>", name="coverlora")
    assert tab.status_code == 422 and "tabname must be one of txt2img, img2img" in tab.json()["detail"]
