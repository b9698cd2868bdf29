"""Soft inpainting over real HTTP: alwayson_scripts["soft inpainting"] and GET /script-info."""
import numpy as np
import requests

from tests.api.test_img2img_api import SMALL, b64, decode, init_image


def _mask():
    from PIL import Image
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    return mask


def test_soft_inpainting_through_alwayson_scripts(server):
    image = init_image(3)
    body = {"prompt": "a wall", "seed": 5, "init_images": [b64(image)], "mask": b64(_mask()), "mask_blur": 4,
            "inpainting_fill": 1, "inpaint_full_res": False, **SMALL,
            "alwayson_scripts": {"Soft inpainting": {"args": [True, 1, 0.5, 4, 0, 0.5, 2]}}}
    response = requests.post(server.url + "/sdapi/v1/img2img", json=body, timeout=180)
    assert response.status_code == 200, response.text
    info = response.json()["info"]
    assert "Soft inpainting enabled: True" in info and "Soft inpainting difference contrast: 2" in info
    out, src = np.asarray(decode(response.json()["images"][0])), np.asarray(image)
    assert np.array_equal(out[:10], src[:10]) and np.array_equal(out[:, :10], src[:, :10])

    bad = dict(body, alwayson_scripts={"soft inpainting": {"args": ["yes"]}})
    response = requests.post(server.url + "/sdapi/v1/img2img", json=bad, timeout=60)
    assert response.status_code == 422 and "soft inpainting" in response.text

    scripts_info = requests.get(server.url + "/sdapi/v1/script-info", timeout=30).json()
    entry = next(s for s in scripts_info if s["name"] == "soft inpainting")
    assert entry["is_alwayson"] and entry["is_img2img"]
    assert [a["label"] for a in entry["args"]] == ["Soft inpainting", "Schedule bias", "Preservation strength",
                                                    "Transition contrast boost", "Mask influence",
                                                    "Difference threshold", "Difference contrast"]
