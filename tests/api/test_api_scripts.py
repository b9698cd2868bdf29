"""Scripts and extensions over real HTTP: script_name / script_args / alwayson_scripts, the script
routes, routes added by an extension's on_app_started, a flag from its preload.py, a raising
extension contained, the webuiapi client."""
import base64
import io

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from modules.tiny_models import write_tiny_checkpoint
from tests.conftest import ServerProcess
from tests.extension_helpers import install_fixture

SMALL = {"steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 3}


@pytest.fixture(scope="module")
def ext_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("extserver")
    (data / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", seed=0)
    for name in ("hook-recorder", "wildcards-lite", "raising-ext"):
        install_fixture(data, name)
    proc = ServerProcess(data, "--api", "--hook-recorder-label", "from-flag")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def post(server, path, body):
    return requests.post(server.url + "/sdapi/v1" + path, json=body, timeout=180)


def get(server, path):
    return requests.get(server.url + "/sdapi/v1" + path, timeout=30)


def calls(server):
    return requests.get(server.url + "/hook-recorder/calls", timeout=10).json()


def decode(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_script_routes(ext_server):
    listing = get(ext_server, "/scripts").json()
    assert {"x/y/z plot", "prompt matrix", "prompts from file or textbox"} <= set(listing["txt2img"])
    info = {(s["name"], s["is_img2img"]): s for s in get(ext_server, "/script-info").json()}
    recorder = info[("hook recorder", False)]
    assert recorder["is_alwayson"] is True
    assert [(a["label"], a["value"]) for a in recorder["args"]] == [("Record", False), ("Strength", 0.5), ("Tag", "")]
    assert info[("x/y/z plot", False)]["args"][0]["choices"][:3] == ["Nothing", "Seed", "Var. seed"]
    extensions = {e["name"]: e for e in get(ext_server, "/extensions").json()}
    # the test's own three, and the built-in ones as A1111 lists extensions-builtin/
    assert set(extensions) == {"hook-recorder", "wildcards-lite", "raising-ext", "soft-inpainting"}
    assert all(e["enabled"] for e in extensions.values())
    assert set(extensions["hook-recorder"]) == {"name", "remote", "branch", "commit_hash", "version",
                                                "commit_date", "enabled"}


def test_extension_routes_flags_and_settings(ext_server):
    data = calls(ext_server)
    assert data["label"] == "from-flag"  # added by the extension's preload.py
    assert data["basedir"].endswith("extensions/hook-recorder")
    options = get(ext_server, "/options").json()
    assert options["hook_recorder_note"] == "default note"  # on_ui_settings
    assert "from-flag" in str(get(ext_server, "/cmd-flags").json().get("hook_recorder_label"))


def test_alwayson_script_args_reach_the_hooks_and_infotext(ext_server):
    requests.post(ext_server.url + "/hook-recorder/clear", timeout=10)
    body = {"prompt": "a __animal__", **SMALL,
            "alwayson_scripts": {"Hook recorder": {"args": [True, 0.25, "api-tag"]}}}
    response = post(ext_server, "/txt2img", body)
    assert response.status_code == 200, response.text
    info = response.json()["info"]
    assert "Hook recorder: api-tag" in info and "Hook recorder strength: 0.25" in info
    assert "Wildcard prompt: a __animal__" in info  # the wildcards extension rewrote the prompt
    assert '"prompt": "a cat"' in info or '"prompt": "a dog"' in info or '"prompt": "a fox"' in info
    events = [name for name, _ in calls(ext_server)["calls"] if not name.startswith("cfg_") and name != "model_loaded"]
    assert events[:5] == ["setup", "before_process", "process", "before_process_batch", "process_batch"]
    assert events[-1] == "postprocess"
    # the same request without the script: nothing recorded, no infotext key
    requests.post(ext_server.url + "/hook-recorder/clear", timeout=10)
    plain = post(ext_server, "/txt2img", {"prompt": "a cat", **SMALL}).json()
    assert "Hook recorder:" not in plain["info"]
    recorded = calls(ext_server)["calls"]
    assert [name for name, _ in recorded if not name.startswith("cfg_")] == []  # script hooks: off
    assert [name for name, _ in recorded[:3]] == ["cfg_denoiser", "cfg_denoised", "cfg_after_cfg"]  # callbacks: always


def test_selectable_script_through_the_api(ext_server):
    body = {"prompt": "a cat", **SMALL, "script_name": "x/y/z plot",
            "script_args": ["Seed", "1, 2", [], "Nothing", "", [], "Nothing", "", [], True, True]}
    response = post(ext_server, "/txt2img", body)
    assert response.status_code == 200, ext_server.output()[-3000:]
    result = response.json()
    assert len(result["images"]) == 3  # the grid, then the two cells
    single = post(ext_server, "/txt2img", {"prompt": "a cat", **{**SMALL, "seed": 2}}).json()
    assert np.array_equal(np.asarray(decode(result["images"][2])), np.asarray(decode(single["images"][0])))


def test_script_errors_are_422_naming_the_script(ext_server):
    cases = [
        ({"script_name": "no such script"}, "Script 'no such script' not found"),
        ({"alwayson_scripts": {"ADetailer": {"args": []}}}, "always on script ADetailer not found"),
        ({"alwayson_scripts": {"hook recorder": {"args": ["yes"]}}},
         "Script 'hook recorder' argument 0 (Record) must be a boolean, got 'yes'"),
        ({"alwayson_scripts": {"hook recorder": [True]}},  # only ControlNet takes the bare-list form
         "alwayson_scripts['hook recorder'] must be an object like {\"args\": [...]}"),
        ({"script_name": "prompt matrix", "script_args": [False, False, "positive", "comma", "wide"]},
         "Script 'prompt matrix' argument 4 (Grid margins (px)) must be a number, got 'wide'"),
        ({"script_name": "x/y/z plot", "script_args": ["Sampler", "Nope", [], 0, "", [], 0, "", [],
                                                       True, False, False, False, False, False, False, 0, True]},
         "Unknown sampler: Nope"),
    ]
    for extra, message in cases:
        response = post(ext_server, "/txt2img", {"prompt": "x", **SMALL, **extra})
        assert response.status_code == 422, (extra, response.text)
        assert response.json()["detail"] == message
    # A1111's built-in always-on parts take their values from the request fields: accepted
    ok = post(ext_server, "/txt2img", {"prompt": "x", **SMALL, "alwayson_scripts": {"Seed": {"args": [1]}}})
    assert ok.status_code == 200
    # more values than the script has controls: the extra ones are dropped (api.md §8.5)
    extra = post(ext_server, "/txt2img", {"prompt": "x", **SMALL,
                                          "alwayson_scripts": {"hook recorder": {"args": [True, 0.5, "x", 4]}}})
    assert extra.status_code == 200, extra.text
    assert "Hook recorder: x" in extra.json()["info"]


def test_raising_extension_is_contained(ext_server):
    assert "a_broken_import.py of extension raising-ext" in ext_server.output()
    assert "Error running callback raising-ext/b_raising_hooks.py/app_started" in ext_server.output()
    response = post(ext_server, "/txt2img", {"prompt": "x", **SMALL})
    assert response.status_code == 200
    assert "raising-ext: process hook fails on purpose" in ext_server.output()


def test_webuiapi_client_runs_a_script(ext_server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=ext_server.port)
    result = api.txt2img(prompt="a cat", steps=3, width=64, height=64, sampler_name="Euler", seed=3,
                         script_name="prompt matrix", script_args=[False, False, "positive", "comma", 0])
    assert len(result.images) == 2  # "a cat" has no optional parts: the grid of one image, and the image
    assert result.info["all_prompts"] == ["a cat"]


def _png_b64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_img2img_scripts_through_the_api(ext_server):
    picture = Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    base = {"prompt": "a hill", **SMALL, "init_images": [_png_b64(picture)], "denoising_strength": 0.5}
    upscaled = post(ext_server, "/img2img", {**base, "script_name": "sd upscale",
                                            "script_args": ["", 8, "Lanczos", 2.0]})  # A1111's own test args
    assert upscaled.status_code == 200, upscaled.text
    (image,) = upscaled.json()["images"]
    assert decode(image).size == (128, 128)
    assert "SD upscale upscaler: Lanczos" in upscaled.json()["info"]
    looped = post(ext_server, "/img2img", {**base, "script_name": "loopback", "script_args": [3, 0.3, "Lazy"]})
    assert looped.status_code == 200, looped.text
    assert len(looped.json()["images"]) == 4  # the grid of the 3 loops, then each loop
    assert "Denoising curve: Lazy" in looped.json()["info"]
    outpainted = post(ext_server, "/img2img", {**base, "script_name": "poor man's outpainting",
                                              "script_args": [32, 4, 0, ["up"]]})
    assert outpainted.status_code == 200, outpainted.text
    assert decode(outpainted.json()["images"][0]).size == (64, 128)
    alternative = post(ext_server, "/img2img", {**base, "sampler_name": "DPM++ 2M",
                                               "script_name": "img2img alternative test",
                                               "script_args": ["", True, True, "a hill", "", True, 3, True, 1.0,
                                                               0.0, False]})
    assert alternative.status_code == 200, alternative.text
    alt_info = alternative.json()["info"]
    assert "Sampler: Euler," in alt_info and "Decode steps: 3" in alt_info and "Denoising strength: 1.0" in alt_info
    assert decode(alternative.json()["images"][0]).size == (64, 64)
    wrong = post(ext_server, "/img2img", {**base, "script_name": "loopback", "script_args": [3, 0.3, "Wavy"]})
    assert wrong.status_code == 422 and "denoising_curve" in wrong.json()["detail"]
    assert post(ext_server, "/txt2img", {"prompt": "x", **SMALL, "script_name": "loopback"}).status_code == 422


def test_extension_extras_step_runs_with_its_ui_defaults(ext_server):
    picture = Image.fromarray(np.random.default_rng(9).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    response = post(ext_server, "/extra-single-image", {"image": _png_b64(picture), "upscaling_resize": 1})
    assert response.status_code == 200, response.text
    assert "Recorder stamp: 0.35" in response.json()["html_info"]  # the step's slider default
    # its Mirror checkbox defaults to off: the image comes back unflipped
    assert np.array_equal(np.asarray(decode(response.json()["image"]).convert("RGB")), np.asarray(picture))
