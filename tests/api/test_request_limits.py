"""Issue 14 over real HTTP: numbers a job cannot take are a 422 naming the field, a job that cannot
fit in memory is refused with what to lower, and the server goes on making images afterwards."""
import json

import requests

SMALL = {"prompt": "a (red:1.2) cat", "steps": 2, "width": 64, "height": 64}


def post_raw(server, body: str):
    return requests.post(server.url + "/sdapi/v1/txt2img", data=body, timeout=300,
                         headers={"content-type": "application/json"})


def post(server, fields: dict):
    return post_raw(server, json.dumps({**SMALL, **fields}))


def field_error(response) -> tuple[list, str]:
    assert response.status_code == 422, response.text
    item = response.json()["detail"][0]
    return item["loc"], item["msg"]


def test_non_finite_numbers_are_422_naming_the_field(server):
    for value in ("nan", "inf", "-Infinity"):
        loc, msg = field_error(post(server, {"cfg_scale": value}))
        assert loc == ["body", "cfg_scale"] and "finite" in msg
    # a bare NaN literal (Python's json writes one) is refused the same way, with a JSON body
    loc, _ = field_error(post_raw(server, '{"steps": 2, "width": 64, "height": 64, "denoising_strength": NaN}'))
    assert loc == ["body", "denoising_strength"]
    response = post(server, {"override_settings": {"eta_ddim": "nan"}})
    assert response.status_code == 422 and response.json()["detail"] == \
        "Setting 'eta_ddim' cannot take the value 'nan': expected a number from 0 to 1"


def test_out_of_range_integers_are_422_naming_the_field(server):
    for field, value in (("seed", 2 ** 64), ("seed", -2 ** 63 - 1), ("subseed", 2 ** 64),
                         ("seed_resize_from_w", 2 ** 64), ("seed_resize_from_h", -2 ** 64)):
        loc, msg = field_error(post(server, {field: value}))
        assert loc == ["body", field] and f"{field} must be between" in msg and str(value) in msg
    response = post(server, {"override_settings": {"eta_noise_seed_delta": 2 ** 64}})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("Setting eta_noise_seed_delta must be between")
    # in range alone, out of range once the batch adds its image index
    response = post(server, {"seed": 2 ** 64 - 1, "batch_size": 2})
    assert response.status_code == 422 and "seed 18446744073709551615 with 2 images" in response.json()["detail"]
    # the extremes themselves are seeds torch takes
    for seed in (2 ** 64 - 1, -2 ** 63):
        response = post(server, {"seed": seed})
        assert response.status_code == 200, response.text
        assert json.loads(response.json()["info"])["seed"] == seed


def test_a_job_that_cannot_fit_is_refused_and_a_large_one_that_fits_runs(server):
    response = post(server, {"batch_size": 100000})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "This job needs about" in detail and "lower batch_size" in detail and "batch_size 100000" in detail
    response = post(server, {"enable_hr": True, "hr_scale": 100, "width": 80, "height": 80, "batch_size": 64})
    assert response.status_code == 422 and "lower the hires upscale" in response.json()["detail"]
    # the estimate is no blanket cap: a batch of 48 at once fits and runs
    response = post(server, {"batch_size": 48, "seed": 5})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 48  # (API: no grid unless saved)
    # the server answers and generates after the refusals
    response = post(server, {"seed": 6})
    assert response.status_code == 200 and len(response.json()["images"]) == 1
