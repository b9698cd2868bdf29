"""The card routes (preview, metadata, cover, single card) under --gradio-auth: like every other
UI resource they need the UI login (Gradio's session cookie); without --gradio-auth they stay open
(networks.md §8.2, §8.6)."""
import pytest
import requests
from PIL import Image

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def ui_login_server(data_dir):
    proc = ServerProcess(data_dir, "--gradio-auth", "bob:pw", "--skip-load-model-at-start")
    try:
        yield proc.wait_ready(path="/config")
    finally:
        proc.stop()


def test_thumb_needs_the_ui_login(ui_login_server, data_dir):
    folder = data_dir / "models" / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    preview = folder / "auth-preview.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(preview)
    url = ui_login_server.url + "/sd_extra_networks/thumb"
    params = {"filename": str(preview), "mtime": 1}

    assert requests.get(url, params=params, timeout=10).status_code == 401
    card_routes = {"metadata": {"page": "lora", "item": "x"}, "cover-images": {"page": "lora", "item": "x"},
                   "get-single-card": {"page": "lora", "tabname": "txt2img", "name": "x"}}
    for route, route_params in card_routes.items():  # the other card routes ask for the login first
        answer = requests.get(f"{ui_login_server.url}/sd_extra_networks/{route}", params=route_params, timeout=10)
        assert answer.status_code == 401, route
    assert requests.get(url, params=params, timeout=10, cookies={"access-token": "forged"}).status_code == 401
    session = requests.Session()
    refused = session.post(ui_login_server.url + "/login", data={"username": "bob", "password": "nope"}, timeout=10)
    assert refused.status_code == 400
    assert session.get(url, params=params, timeout=10).status_code == 401
    logged_in = session.post(ui_login_server.url + "/login", data={"username": "bob", "password": "pw"}, timeout=10)
    assert logged_in.status_code == 200
    answer = session.get(url, params=params, timeout=10)
    assert answer.status_code == 200 and answer.content == preview.read_bytes()
    for route, route_params in card_routes.items():  # logged in: past the check, to the lookup
        answer = session.get(f"{ui_login_server.url}/sd_extra_networks/{route}", params=route_params, timeout=10)
        assert answer.status_code == 404, route
    # still only files under the pages' folders
    outside = data_dir / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    assert session.get(url, params={"filename": str(outside)}, timeout=10).status_code == 404
