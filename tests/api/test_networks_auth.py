"""The card-preview route under --gradio-auth: like every other UI resource it needs the UI login
(Gradio's session cookie); without --gradio-auth it stays open (networks.md §8.2)."""
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
    assert requests.get(url, params=params, timeout=10, cookies={"access-token": "forged"}).status_code == 401
    session = requests.Session()
    refused = session.post(ui_login_server.url + "/login", data={"username": "bob", "password": "nope"}, timeout=10)
    assert refused.status_code == 400
    assert session.get(url, params=params, timeout=10).status_code == 401
    logged_in = session.post(ui_login_server.url + "/login", data={"username": "bob", "password": "pw"}, timeout=10)
    assert logged_in.status_code == 200
    answer = session.get(url, params=params, timeout=10)
    assert answer.status_code == 200 and answer.content == preview.read_bytes()
    # still only files under the pages' folders
    outside = data_dir / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    assert session.get(url, params={"filename": str(outside)}, timeout=10).status_code == 404
