"""The built-in ControlNet through real HTTP, in the extension's request and response shapes
(controlnet.md §5), with requests and webuiapi's ControlNetUnit."""
import base64
import io
import json

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from tests.controlnet_models import write_random_lama, write_tiny_controlnets


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def square() -> Image.Image:
    x = np.zeros((64, 64, 3), dtype=np.uint8)
    x[16:48, 16:48] = 255
    return Image.fromarray(x)


@pytest.fixture(scope="module")
def cn_server(server, data_dir):
    write_tiny_controlnets(data_dir / "models" / "ControlNet")
    requests.post(server.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd1"}, timeout=300)
    return server


def txt2img(server, units, **fields):
    body = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler",
            "alwayson_scripts": {"ControlNet": {"args": units}}, **fields}
    return requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=300)


def test_lists_and_settings_in_the_extension_shapes(cn_server):
    url = cn_server.url
    assert requests.get(url + "/controlnet/version").json() == {"version": 3}
    models = requests.get(url + "/controlnet/model_list").json()["model_list"]
    assert "tiny_sd15_canny [e3b0c442]" in models and "None" not in models
    modules = requests.get(url + "/controlnet/module_list").json()
    assert modules["module_list"][0] == "none"
    assert modules["module_detail"]["canny"]["sliders"][1] == {"name": "Low Threshold", "value": 100, "min": 1,
                                                                "max": 255, "step": 1}
    assert modules["module_detail"]["depth"]["available"] is False
    labels = requests.get(url + "/controlnet/module_list?alias_names=true").json()["module_list"]
    assert "depth_midas" in labels
    types = requests.get(url + "/controlnet/control_types").json()["control_types"]
    assert types["Canny"]["module_list"][:2] == ["none", "canny"]
    assert types["Canny"]["default_option"] == "canny"
    assert "tiny_sd15_canny [e3b0c442]" in types["Canny"]["model_list"]
    assert types["All"]["default_model"] == "None"
    assert requests.get(url + "/controlnet/settings").json() == {"control_net_unit_count": 3}


def test_detect_returns_the_map_and_names_errors(cn_server):
    url = cn_server.url
    answer = requests.post(url + "/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [b64(square())],
        "controlnet_processor_res": 64, "controlnet_threshold_a": 100, "controlnet_threshold_b": 200}).json()
    assert answer["info"] == "Success"
    detected = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))))
    assert detected.shape[:2] == (64, 64) and set(np.unique(detected)) == {0, 255}
    bad = requests.post(url + "/controlnet/detect", json={"controlnet_module": "nope",
                                                          "controlnet_input_images": [b64(square())]})
    assert bad.status_code == 422 and bad.json()["detail"] == "Module not available"
    empty = requests.post(url + "/controlnet/detect", json={"controlnet_module": "canny"})
    assert empty.status_code == 422 and empty.json()["detail"] == "No image selected"


def test_txt2img_with_a_unit_returns_image_map_and_infotext(cn_server):
    unit = {"module": "canny", "model": "tiny_sd15_canny", "image": b64(square()), "processor_res": 64,
            "resize_mode": 1, "control_mode": 0}  # ints for enums, and no "enabled": a model means enabled
    answer = txt2img(cn_server, [unit])
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert len(data["images"]) == 2  # the image, then the detected map
    info = json.loads(data["info"])
    assert len(info["infotexts"]) == 1
    assert 'ControlNet 0: "Module: canny, Model: tiny_sd15_canny [e3b0c442], Weight: 1.0' in info["infotexts"][0]
    no_map = txt2img(cn_server, [{**unit, "save_detected_map": False}]).json()
    assert len(no_map["images"]) == 1
    plain = txt2img(cn_server, [{**unit, "enabled": False}]).json()
    assert plain["images"][0] != data["images"][0]


@pytest.mark.parametrize("unit, message", [
    ({"module": "canny", "model": "missing", "image": "x"}, "unit 0: image is not"),
    ({"module": "canny", "model": "missing"}, "unit 0: ControlNet model 'missing' not found"),
    ({"module": "depth_midas", "model": "tiny_sd15_canny", "image": None}, "needs dpt_hybrid-midas"),
    ({"module": "inpaint_only+lama", "model": "tiny_sd15_canny", "image": None},
     "needs ControlNetLama.pth in "),
    ({"model": "tiny_sd15_canny", "weight": 5}, "unit 0: weight must be between 0 and 2"),
])
def test_bad_units_are_a_422_naming_unit_and_field(cn_server, unit, message):
    answer = txt2img(cn_server, [unit])
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


def test_webuiapi_controlnet_unit(cn_server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=cn_server.port, sampler="Euler", steps=3)
    unit = webuiapi.ControlNetUnit(image=square(), module="canny", model="tiny_sd15_canny [e3b0c442]",
                                   processor_res=64)
    result = api.txt2img(prompt="a cube", seed=5, width=64, height=64, controlnet_units=[unit])
    assert result.image.size == (64, 64)
    assert len(result.images) == 2
    assert "ControlNet 0" in result.info["infotexts"][0]


def test_controlnet_is_an_always_on_script_in_both_modes(cn_server):
    listing = requests.get(cn_server.url + "/sdapi/v1/scripts").json()
    assert "controlnet" in listing["txt2img"] and "controlnet" in listing["img2img"]
    info = [s for s in requests.get(cn_server.url + "/sdapi/v1/script-info").json() if s["name"] == "controlnet"]
    assert sorted(s["is_img2img"] for s in info) == [False, True]
    assert all(s["is_alwayson"] and len(s["args"]) == 3 for s in info)  # one argument per unit slot


def test_extra_units_are_dropped_and_non_dicts_ignored(cn_server):
    unit = {"module": "canny", "model": "tiny_sd15_canny", "image": b64(square()), "processor_res": 64}
    answer = txt2img(cn_server, [None, unit, "junk"])  # slot 0 empty, slot 2 not a unit
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert len(data["images"]) == 2
    # three slots: a fourth unit is dropped before it is read (its weight 5 would be a 422)
    too_many = txt2img(cn_server, [unit, unit, unit, {**unit, "weight": 5}])
    assert too_many.status_code == 200, too_many.text
    assert len(too_many.json()["images"]) == 1 + 3  # the image and the three units' maps
    infotext = json.loads(too_many.json()["info"])["infotexts"][0]
    assert all(f"ControlNet {i}: " in infotext for i in range(3)) and "ControlNet 3" not in infotext


def test_legacy_bare_list_of_units_is_accepted(cn_server):
    unit = {"module": "canny", "model": "tiny_sd15_canny", "image": b64(square()), "processor_res": 64}
    body = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler"}
    legacy = requests.post(cn_server.url + "/sdapi/v1/txt2img", timeout=300,
                           json={**body, "alwayson_scripts": {"controlnet": [unit]}})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["images"] == txt2img(cn_server, [unit]).json()["images"]  # same as {"args": [unit]}
    bad = requests.post(cn_server.url + "/sdapi/v1/txt2img", timeout=300,
                        json={**body, "alwayson_scripts": {"controlnet": [{**unit, "weight": 5}]}})
    assert bad.status_code == 422 and "unit 0: weight must be between 0 and 2" in bad.json()["detail"]


def test_img2img_unit_without_image_uses_the_init_image(cn_server):
    body = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler",
            "init_images": [b64(square())], "denoising_strength": 0.6,
            "alwayson_scripts": {"controlnet": {"args": [{"enabled": True, "module": "canny",
                                                          "model": "tiny_sd15_canny", "processor_res": 64}]}}}
    answer = requests.post(cn_server.url + "/sdapi/v1/img2img", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert len(data["images"]) == 2
    detected = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][1]))).convert("L"))
    reference = __import__("cv2").Canny(np.asarray(square()), 100, 200)
    assert np.array_equal(detected, reference)  # the map of the init image
    assert 'ControlNet 0: "Module: canny' in json.loads(data["info"])["infotexts"][0]


def test_img2img_inpaint_only_lama_unit(cn_server, data_dir):
    """The module by its name in an img2img request, once its weights are in place (removed after:
    the 422 case above runs without them)."""
    lama = data_dir / "models" / "ControlNetPreprocessor" / "lama" / "ControlNetLama.pth"
    write_random_lama(lama)
    try:
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[16:48, 8:40] = 255
        unit = {"enabled": True, "module": "inpaint_only+lama", "model": "tiny_sd15_canny",
                "image": {"image": b64(square()), "mask": b64(Image.fromarray(mask))}}
        body = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler",
                "init_images": [b64(square())], "denoising_strength": 0.6,
                "alwayson_scripts": {"controlnet": {"args": [unit]}}}
        answer = requests.post(cn_server.url + "/sdapi/v1/img2img", json=body, timeout=300)
    finally:
        lama.unlink()
    assert answer.status_code == 200, answer.text
    assert 'ControlNet 0: "Module: inpaint_only+lama' in json.loads(answer.json()["info"])["infotexts"][0]
