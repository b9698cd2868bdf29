"""The server routes of api.md §7 over real HTTP: memory, checkpoint unload/reload, the UI's
/internal helpers, and --api-server-stop's restart and stop (last: they end the server)."""
import json
import re
import time

import pytest
import requests
import torch

from modules.settings import sysinfo
from tests.conftest import ServerProcess

SMALL = {"prompt": "a red cube", "steps": 2, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def stoppable(tmp_path_factory):
    """Its own server (it gets restarted and stopped) on its own data folder with one tiny model."""
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("server-routes")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", seed=0)
    proc = ServerProcess(root, "--api", "--api-server-stop")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def url(server, path):
    return server.url + path


def test_memory_has_a1111_shape(stoppable):
    body = requests.get(url(stoppable, "/sdapi/v1/memory"), timeout=30).json()
    ram = body["ram"]
    assert set(ram) == {"free", "used", "total"} and all(isinstance(v, int) for v in ram.values())
    assert ram["free"] + ram["used"] == ram["total"] > 0
    if not torch.cuda.is_available():
        assert body["cuda"] == {"error": "unavailable"}
    else:
        assert set(body["cuda"]) == {"system", "active", "allocated", "reserved", "inactive", "events"}


def test_unload_and_reload_checkpoint_answer_empty_objects_and_generation_still_works(stoppable):
    assert requests.post(url(stoppable, "/sdapi/v1/unload-checkpoint"), timeout=60).json() == {}
    # a job after an unload brings the weights back by itself
    response = requests.post(url(stoppable, "/sdapi/v1/txt2img"), json=SMALL, timeout=120)
    assert response.status_code == 200 and len(response.json()["images"]) == 1
    assert requests.post(url(stoppable, "/sdapi/v1/unload-checkpoint"), timeout=60).json() == {}
    assert requests.post(url(stoppable, "/sdapi/v1/reload-checkpoint"), timeout=60).json() == {}
    response = requests.post(url(stoppable, "/sdapi/v1/txt2img"), json=SMALL, timeout=120)
    assert response.status_code == 200


def test_internal_progress_reports_a_task_by_id(stoppable):
    keys = {"active", "queued", "completed", "progress", "eta", "live_preview", "id_live_preview", "textinfo"}
    unknown = requests.post(url(stoppable, "/internal/progress"), json={"id_task": "task(nope)"}, timeout=30).json()
    assert set(unknown) == keys and not (unknown["active"] or unknown["queued"] or unknown["completed"])
    task = "task(txt2img-TEST001)"
    assert requests.post(url(stoppable, "/sdapi/v1/txt2img"), json={**SMALL, "force_task_id": task},
                         timeout=120).status_code == 200
    done = requests.post(url(stoppable, "/internal/progress"),
                         json={"id_task": task, "id_live_preview": -1, "live_preview": True}, timeout=30).json()
    assert done["completed"] is True and done["active"] is False and done["progress"] == 1.0
    bad = requests.post(url(stoppable, "/internal/progress"), json={"id_live_preview": "x"}, timeout=30)
    assert bad.status_code == 422


def test_quicksettings_hint_lists_every_setting_with_its_label(stoppable):
    hint = requests.get(url(stoppable, "/internal/quicksettings-hint"), timeout=30).json()
    options = requests.get(url(stoppable, "/sdapi/v1/options"), timeout=30).json()
    assert [item["name"] for item in hint] == list(options)
    labels = {item["name"]: item["label"] for item in hint}
    assert labels["sd_vae"] == "SD VAE" and labels["CLIP_stop_at_last_layers"] == "Clip skip"


def test_sysinfo_and_its_download_carry_a_valid_checksum(stoppable):
    text = requests.get(url(stoppable, "/internal/sysinfo"), timeout=60).text
    data = json.loads(text)
    for key in ("Platform", "Python", "Version", "Commandline", "Torch env info", "CPU", "RAM", "Config",
                "Startup", "Packages", "Checksum"):
        assert key in data, key
    assert re.fullmatch(r"[0-9a-f]{64}", data["Checksum"]) and sysinfo.check(text)
    assert not sysinfo.check(text.replace('"Platform": "', '"Platform": "edited '))
    download = requests.get(url(stoppable, "/internal/sysinfo-download"), timeout=60)
    assert re.fullmatch(r'attachment; filename="sysinfo-\d{4}-\d\d-\d\d-\d\d-\d\d\.json"',
                        download.headers["content-disposition"])
    assert sysinfo.check(download.text)


def test_sysinfo_masks_credentials_on_the_command_line():
    assert sysinfo.masked_argv(["webui.py", "--api-auth", "u:secret", "--gradio-auth=a:b", "--api"]) == \
        ["webui.py", "--api-auth", "<hidden>", "--gradio-auth=<hidden>", "--api"]


def test_profile_startup_has_total_and_records(stoppable):
    body = requests.get(url(stoppable, "/internal/profile-startup"), timeout=30).json()
    assert set(body) == {"total", "records"}
    assert {"initialize", "create app"} <= set(body["records"])
    assert body["total"] >= sum(body["records"].values()) - 0.01


def test_stop_routes_exist_only_with_the_flag():
    from fastapi import FastAPI

    from modules import cmd_args
    from modules.api import server_routes
    for flags, present in (([], False), (["--api-server-stop"], True)):
        app = FastAPI()
        server_routes.register(app, cmd_args.parse_args(["--api", *flags]))
        paths = set(app.openapi()["paths"])
        assert {"/sdapi/v1/server-kill", "/sdapi/v1/server-restart", "/sdapi/v1/server-stop"} <= paths or not present
        assert ("/sdapi/v1/server-stop" in paths) == present
        assert {"/sdapi/v1/memory", "/sdapi/v1/unload-checkpoint", "/internal/sysinfo",
                "/internal/sysinfo-download", "/internal/profile-startup"} <= paths
    ui_only = FastAPI()
    server_routes.register(ui_only, cmd_args.parse_args([]))
    assert "/sdapi/v1/memory" not in set(ui_only.openapi()["paths"])  # no API without --api


def _wait(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _answers(server) -> bool:
    try:
        return requests.get(url(server, "/internal/ping"), timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_server_restart_comes_back_then_server_stop_ends_it(stoppable):
    requests.post(url(stoppable, "/sdapi/v1/options"), json={"jpeg_quality": 55}, timeout=30)
    assert requests.post(url(stoppable, "/sdapi/v1/server-restart"), timeout=30).status_code == 200
    assert _wait(lambda: not _answers(stoppable), 30), "the server did not go down"
    assert _wait(lambda: _answers(stoppable), 120), stoppable.output()
    assert stoppable.proc.poll() is None  # the same process, built afresh
    assert "Restarting" in stoppable.output()
    assert requests.get(url(stoppable, "/sdapi/v1/options"), timeout=30).json()["jpeg_quality"] == 55
    response = requests.post(url(stoppable, "/sdapi/v1/server-stop"), timeout=30)
    assert response.status_code == 200 and response.text == "Stopping."
    stoppable.proc.wait(timeout=60)
    assert stoppable.proc.returncode == 0
