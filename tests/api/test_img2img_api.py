"""POST /sdapi/v1/img2img over real HTTP (requests and the webuiapi client)."""
import base64
import io
import json

import numpy as np
import requests
import webuiapi
from PIL import Image

SD1 = {"override_settings": {"sd_model_checkpoint": "tiny-sd1"}}
SMALL = {"steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", **SD1}


def b64(image: Image.Image, data_url=False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    return "data:image/png;base64," + text if data_url else text


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def init_image(seed=0, size=(64, 64)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def box_mask(size=(64, 64)):
    mask = Image.new("L", size, 0)
    mask.paste(255, (16, 16, 40, 48))
    return mask


def post(server, body):
    return requests.post(server.url + "/sdapi/v1/img2img", json=body, timeout=120)


def test_img2img_answers_in_a1111_shape(server):
    image = init_image(1)
    response = post(server, {"prompt": "a harbour", "seed": 11, "init_images": [b64(image, data_url=True)],
                             "batch_size": 2, **SMALL})
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"} and len(data["images"]) == 2
    assert decode(data["images"][0]).size == (64, 64)
    info = json.loads(data["info"])
    assert info["all_seeds"] == [11, 12] and info["denoising_strength"] == 0.75
    assert "Denoising strength: 0.75" in info["infotexts"][0]
    assert data["parameters"]["init_images"] is None and data["parameters"]["mask"] is None


def test_inpaint_keeps_unmasked_pixels_and_echoes_init_images(server):
    image, mask = init_image(2), box_mask()
    body = {"prompt": "a boat", "seed": 3, "init_images": [b64(image)], "mask": b64(mask), "mask_blur": 0,
            "inpainting_fill": 1, "inpaint_full_res": False, "include_init_images": True, **SMALL}
    response = post(server, body)
    assert response.status_code == 200, response.text
    data = response.json()
    out = np.asarray(decode(data["images"][0]).convert("RGB"))
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], np.asarray(image)[outside])
    assert data["parameters"]["init_images"] == [b64(image)] and data["parameters"]["mask"] == b64(mask)
    assert "Mask blur" not in json.loads(data["info"])["infotexts"][0]


def test_bad_images_are_422_naming_the_field(server):
    good = b64(init_image(3))
    cases = [({"init_images": ["not base64!"]}, "init_images[0]"),
             ({"init_images": [good, base64.b64encode(b"plain text").decode()], "batch_size": 2}, "init_images[1]"),
             ({"init_images": [good], "mask": "%%%"}, "mask"),
             ({"init_images": [good], "mask": b64(box_mask((32, 32)))}, "mask")]
    for body, field in cases:
        response = post(server, {**SMALL, **body})
        assert response.status_code == 422, (field, response.text)
        assert response.json()["detail"].startswith(field), response.text
    missing = post(server, {"prompt": "x", **SMALL})
    assert missing.status_code == 404 and missing.json()["detail"] == "Init image not found"
    too_many = post(server, {**SMALL, "init_images": [good] * 3, "batch_size": 2})
    assert too_many.status_code == 422 and "bad number of images" in too_many.json()["detail"]


def test_webuiapi_img2img_with_and_without_mask(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=3)
    image, mask = init_image(4), box_mask()
    plain = api.img2img(images=[image], prompt="a lighthouse", seed=5, width=64, height=64,
                        denoising_strength=0.5, override_settings=SD1["override_settings"])
    assert plain.image.size == (64, 64) and plain.info["all_seeds"] == [5]
    masked = api.img2img(images=[image], mask_image=mask, prompt="a lighthouse", seed=5, width=64, height=64,
                         mask_blur=0, inpainting_fill=1, inpaint_full_res=True, inpaint_full_res_padding=4,
                         override_settings=SD1["override_settings"])
    out = np.asarray(masked.image.convert("RGB"))
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], np.asarray(image)[outside])
    assert "Inpaint area: Only masked" in masked.info["infotexts"][0]


def test_return_mask_settings_append_mask_and_composite(server):
    image, mask = init_image(6), box_mask()
    settings = {**SD1["override_settings"], "return_mask": True, "return_mask_composite": True}
    body = {"prompt": "a dock", "seed": 9, "init_images": [b64(image)], "mask": b64(mask), "mask_blur": 0,
            "inpainting_fill": 1, **SMALL, "override_settings": settings}
    response = post(server, body)
    assert response.status_code == 200, response.text
    images = [decode(text) for text in response.json()["images"]]
    assert len(images) == 3 and all(im.size == (64, 64) for im in images)
    assert np.array_equal(np.asarray(images[1].convert("L")), np.asarray(mask))
    assert images[2].mode == "RGBA" and np.array_equal(np.asarray(images[2])[..., 3], np.asarray(mask))
