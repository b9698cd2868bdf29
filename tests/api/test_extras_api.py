"""Extras routes over real HTTP (api.md §10.1, §12; extras.md §5), with requests and webuiapi."""
import base64
import io
import os

import numpy as np
import pytest
import requests
import spandrel
import torch
import webuiapi
from PIL import Image, PngImagePlugin

from modules.upscaling import tiny_upscalers


def post(server, path, body):
    return requests.post(server.url + "/sdapi/v1" + path, json=body, timeout=120)


def get(server, path):
    return requests.get(server.url + "/sdapi/v1" + path, timeout=30)


def b64(image: Image.Image, pnginfo=None) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def noise(width, height, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_upscaler_files(server, data_dir):
    """A tiny 2x RRDB in models/HAT (any loadable file works in any family folder) and a tiny compact
    net as RealESRGAN_x4plus.pth; the ESRGAN folder stays empty for the other tests."""
    paths = [tiny_upscalers.write("esrgan", os.path.join(data_dir, "models", "HAT", "2x-TinyRRDB.pth"), scale=2),
             tiny_upscalers.write("compact", os.path.join(data_dir, "models", "RealESRGAN", "RealESRGAN_x4plus.pth"))]
    yield dict(zip(("rrdb", "compact"), paths))
    for path in paths:
        os.remove(path)


def test_upscaler_lists(server, tiny_upscaler_files):
    items = get(server, "/upscalers").json()
    names = [item["name"] for item in items]
    assert names[:3] == ["None", "Lanczos", "Nearest"]
    assert all(set(item) == {"name", "model_name", "model_path", "model_url", "scale"} for item in items)
    by_name = {item["name"]: item for item in items}
    assert by_name["2x-TinyRRDB"] == {"name": "2x-TinyRRDB", "model_name": None, "scale": 4, "model_url": None,
                                     "model_path": tiny_upscaler_files["rrdb"]}
    assert by_name["R-ESRGAN 4x+"]["model_path"] == tiny_upscaler_files["compact"]
    assert "ESRGAN_4x" not in names and "R-ESRGAN 4x+ Anime6B" not in names  # weights absent
    real = get(server, "/realesrgan-models").json()
    assert [r["name"] for r in real] == ["R-ESRGAN General 4xV3", "R-ESRGAN General WDN 4xV3", "R-ESRGAN AnimeVideo",
                                         "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "R-ESRGAN 2x+"]
    assert [r["scale"] for r in real] == [4, 4, 4, 4, 4, 2]
    assert real[3]["path"] == tiny_upscaler_files["compact"] and real[0]["path"] is None
    assert get(server, "/face-restorers").json() == [{"name": "CodeFormer", "cmd_dir": None},
                                                    {"name": "GFPGAN", "cmd_dir": None}]


def test_single_image_lanczos_sizes_and_infotext(server):
    params = PngImagePlugin.PngInfo()
    params.add_text("parameters", "a cat\nSteps: 2, Seed: 1")
    data = post(server, "/extra-single-image", {"image": b64(noise(100, 75), params), "upscaler_1": "Lanczos"}).json()
    assert set(data) == {"html_info", "image"}
    assert data["html_info"] == "<p>Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos</p>"
    out = decode(data["image"])
    assert out.size == (200, 144)
    assert out.info["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"
    assert out.info["parameters"] == "a cat\nSteps: 2, Seed: 1"
    crop = post(server, "/extra-single-image", {"image": b64(noise(128, 128)), "upscaler_1": "Lanczos",
                                                "resize_mode": 1, "upscaling_resize_w": 300,
                                                "upscaling_resize_h": 200}).json()
    assert decode(crop["image"]).size == (300, 200)
    assert crop["html_info"] == ("<p>Postprocess upscale to: 300x200, Postprocess crop to: 300x200, "
                                 "Postprocess upscaler: Lanczos</p>")
    cover = post(server, "/extra-single-image", {"image": b64(noise(128, 128)), "upscaler_1": "Lanczos",
                                                 "resize_mode": 1, "upscaling_resize_w": 300,
                                                 "upscaling_resize_h": 200, "upscaling_crop": False}).json()
    assert decode(cover["image"]).size == (296, 296)
    untouched = post(server, "/extra-single-image", {"image": b64(noise(40, 30))}).json()
    assert untouched["html_info"] == "<p></p>"
    assert np.array_equal(np.asarray(decode(untouched["image"]).convert("RGB")), np.asarray(noise(40, 30)))


def test_model_upscaler_equals_spandrel_and_blends(server, tiny_upscaler_files):
    src = noise(32, 24, seed=4)
    data = post(server, "/extra-single-image", {"image": b64(src), "upscaler_1": "2x-TinyRRDB",
                                                "upscaling_resize": 2}).json()
    out = np.asarray(decode(data["image"]).convert("RGB"), np.int16)
    descriptor = spandrel.ModelLoader().load_from_file(tiny_upscaler_files["rrdb"])
    x = torch.from_numpy(np.asarray(src, np.float32)[:, :, ::-1] / 255.0).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        ref = (descriptor(x)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.int16)
    assert out.shape == ref.shape == (48, 64, 3) and np.abs(out - ref).max() <= 1
    lanczos = np.asarray(decode(post(server, "/extra-single-image", {"image": b64(src), "upscaler_1": "Lanczos"})
                                .json()["image"]).convert("RGB"), np.float32)
    body = {"image": b64(src), "upscaler_1": "2x-TinyRRDB", "upscaler_2": "Lanczos"}
    zero = post(server, "/extra-single-image", {**body, "extras_upscaler_2_visibility": 0}).json()
    assert "upscaler 2" not in zero["html_info"]
    assert np.array_equal(np.asarray(decode(zero["image"]).convert("RGB"), np.int16), out)
    full = post(server, "/extra-single-image", {**body, "extras_upscaler_2_visibility": 1}).json()
    assert np.abs(np.asarray(decode(full["image"]).convert("RGB"), np.float32) - lanczos).max() <= 1
    half = post(server, "/extra-single-image", {**body, "extras_upscaler_2_visibility": 0.5}).json()
    assert "Postprocess upscaler 2: Lanczos" in half["html_info"]
    mean = (out.astype(np.float32) + lanczos) / 2
    assert np.abs(np.asarray(decode(half["image"]).convert("RGB"), np.float32) - mean).max() <= 1


@pytest.mark.parametrize("body,status,message", [
    ({"upscaler_1": "4x-NoSuchModel"}, 422, "upscaler_1: Upscaler '4x-NoSuchModel' not found; valid names: None"),
    ({"upscaler_1": "ESRGAN_4x"}, 503, "Upscaler 'ESRGAN_4x' needs ESRGAN_4x.pth in"),
    ({"upscaler_1": "Lanczos", "upscaler_2": "nope"}, 422, "upscaler_2: Upscaler 'nope' not found"),
    ({"upscaler_1": "Lanczos", "upscaler_2": "ESRGAN_4x"}, 200, None),  # visibility 0: never loaded
    ({"codeformer_visibility": 1}, 503, "CodeFormer face restoration needs its weights: put codeformer-v0.1.0.pth"),
    ({"gfpgan_visibility": 0.5}, 503, "detection_Resnet50_Final.pth, parsing_parsenet.pth"),
    ({"image": ""}, 422, "Invalid encoded image"),
    ({"image": "bm90IGFuIGltYWdl"}, 422, "Invalid encoded image"),
    ({"image": None}, 404, "Image not found"),
    ({"gfpgan_visibility": 2}, 422, None),
    ({"upscaling_resize": 0}, 422, None),
    ({"resize_mode": 3}, 422, None),
    ({"upscaler_1": "Lanczos", "upscaling_resize": 200}, 422, "above the limit of 200"),
])
def test_extras_errors(server, body, status, message):
    response = post(server, "/extra-single-image", {"image": b64(noise(100, 75)), **body})
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["detail"]


def test_batch_images_and_webuiapi(server):
    assert post(server, "/extra-batch-images", {"upscaler_1": "Lanczos"}).status_code == 422  # no imageList
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
    single = api.extra_single_image(noise(40, 32), upscaler_1="Nearest", upscaling_resize=2)
    assert single.image.size == (80, 64)
    batch = api.extra_batch_images([noise(40, 32), noise(24, 24, seed=2)], upscaler_1="Lanczos", upscaling_resize=3)
    assert [image.size for image in batch.images] == [(120, 96), (72, 72)]
    assert batch.info == "<p>Postprocess upscale by: 3.0, Postprocess upscaler: Lanczos</p>"


def test_interrogate_route(server, data_dir):
    from modules.interrogate import tiny_models
    path = tiny_models.write_deepbooru(os.path.join(data_dir, "models", "torch_deepdanbooru", "tiny.pt"),
                                       ["cat", "dog", "rating:safe"])
    try:
        image = b64(noise(64, 48))
        data = post(server, "/interrogate", {"image": image, "model": "deepdanbooru"})
        assert data.status_code == 200 and set(data.json()) == {"caption"}
        assert set(filter(None, data.json()["caption"].split(", "))) <= {"cat", "dog"}
        api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port)
        assert api.interrogate(noise(64, 48), model="deepdanbooru").info == data.json()["caption"]
    finally:
        os.remove(path)
    assert post(server, "/interrogate", {"image": image, "model": "blip2"}).json()["detail"] == "Model not found"
    assert post(server, "/interrogate", {"image": None}).status_code == 404
    assert post(server, "/interrogate", {"image": ""}).status_code == 422
    missing = post(server, "/interrogate", {"image": image, "model": "clip"})
    assert missing.status_code == 503 and "Interrogation model not installed" in missing.json()["detail"]
