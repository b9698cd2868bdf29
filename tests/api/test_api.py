"""Real HTTP against a real server process on 127.0.0.1 (requests and the webuiapi client)."""
import base64
import io
import json
import signal
import threading
import time

import pytest
import requests
import webuiapi
from PIL import Image

from tests.conftest import ServerProcess

SMALL = {"steps": 3, "width": 64, "height": 64}


def post(server, path, body=None, **kwargs):
    return requests.post(server.url + "/sdapi/v1" + path, json=body, timeout=120, **kwargs)


def get(server, path, **kwargs):
    return requests.get(server.url + "/sdapi/v1" + path, timeout=30, **kwargs)


def decode(b64: str) -> Image.Image:
    assert not b64.startswith("data:")
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_sd_models_lists_every_tiny_checkpoint(server):
    items = get(server, "/sd-models").json()
    names = sorted(item["model_name"] for item in items)
    assert names == ["tiny-sd1", "tiny-sd1-inpaint", "tiny-sd1-pix2pix", "tiny-sd2-v", "tiny-sdxl",
                     "tiny-sdxl-inpaint", "tiny-sdxl-refiner"]
    for item in items:
        assert set(item) == {"title", "model_name", "hash", "sha256", "filename", "config"}
        if item["hash"]:
            assert item["title"].endswith(f" [{item['hash']}]") and item["sha256"].startswith(item["hash"])
    sd2 = next(i for i in items if i["model_name"] == "tiny-sd2-v")
    assert sd2["config"].endswith("tiny-sd2-v.yaml")


def test_txt2img_answers_in_a1111_shape(server):
    body = {"prompt": "a red kite over dunes", "seed": 1234, "batch_size": 2, "sampler_name": "Euler",
            "firstphase_width": 0, "unknown_field_from_an_extension": {"x": 1}, **SMALL}
    response = post(server, "/txt2img", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"}
    assert len(data["images"]) == 2
    image = decode(data["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)
    info = json.loads(data["info"])
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["sampler_name"] == "Euler" and info["steps"] == 3 and info["batch_size"] == 2
    assert info["infotexts"][1].startswith("a red kite over dunes\nSteps: 3, Sampler: Euler, Schedule type: "
                                           "Automatic, CFG scale: 7.0, Seed: 1235, Size: 64x64, Model hash: ")
    assert image.info["parameters"] == info["infotexts"][0]
    assert data["parameters"]["prompt"] == "a red kite over dunes"
    assert data["parameters"]["sampler_index"] == "Euler"
    assert list(info)[:4] == ["prompt", "all_prompts", "negative_prompt", "all_negative_prompts"]


def test_same_seed_same_pixels_and_null_fields_mean_defaults(server):
    body = {"prompt": "x", "seed": 99, "cfg_scale": None, "negative_prompt": None, **SMALL}
    a = post(server, "/txt2img", body).json()
    b = post(server, "/txt2img", body).json()
    assert decode(a["images"][0]).tobytes() == decode(b["images"][0]).tobytes()
    assert json.loads(a["info"])["cfg_scale"] == 7.0


def test_errors_are_clear(server):
    response = post(server, "/txt2img", {"prompt": "x", "sampler_name": "Eular", **SMALL})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("Sampler 'Eular' not found") and "Euler" in body["detail"]
    assert set(body) == {"error", "detail", "body", "errors"}
    response = post(server, "/txt2img", {"prompt": "x", "override_settings": {"sd_model_checkpoint": "nope"}, **SMALL})
    assert response.status_code == 422 and response.json()["detail"] == "Checkpoint 'nope' not found"
    response = post(server, "/txt2img", {"prompt": "x", "steps": 2.5})
    assert response.status_code == 422
    response = post(server, "/txt2img", {"prompt": "x", "width": 32, "steps": 2})
    assert response.status_code == 422 and "width" in response.json()["detail"]
    response = post(server, "/options", {"no_such_setting": 1})
    assert response.status_code == 422 and "no_such_setting" in response.json()["detail"]
    for path, body in (("/txt2img", {"prompt": "x", "override_settings": {"sd_vae": "nope.safetensors"}, **SMALL}),
                       ("/options", {"sd_vae": "nope.safetensors"})):
        response = post(server, path, body)
        assert response.status_code == 422 and response.json()["detail"].startswith("VAE 'nope.safetensors' not found")
    assert get(server, "/options").json()["sd_vae"] == "Automatic"
    for path, body in (("/txt2img", {"prompt": "x", "override_settings": {"samples_format": "xyz"}, **SMALL}),
                       ("/options", {"grid_format": "xyz"})):
        response = post(server, path, body)
        assert response.status_code == 422 and "'xyz' is not an image format" in response.json()["detail"]


def test_scripts_that_do_not_exist_are_refused(server):
    # a request for a script must not quietly become a plain generation
    response = post(server, "/txt2img", {"prompt": "x", "script_name": "No such script", **SMALL})
    assert response.status_code == 422 and response.json()["detail"] == "Script 'No such script' not found"
    response = post(server, "/txt2img", {"prompt": "x", "alwayson_scripts": {"ADetailer": {"args": []}}, **SMALL})
    assert response.status_code == 422 and response.json()["detail"] == "always on script ADetailer not found"
    # the built-in always-on scripts take their values from the request fields: accepted, no effect
    response = post(server, "/txt2img", {"prompt": "x", "alwayson_scripts": {"Seed": {"args": [1]}, "sampler": {}},
                                         "script_name": None, **SMALL})
    assert response.status_code == 200


def test_options_switch_checkpoint_and_override_for_one_job(server):
    options = get(server, "/options").json()
    assert options["samples_format"] == "png" and "sd_model_checkpoint" in options
    assert post(server, "/options", {"sd_model_checkpoint": "tiny-sd1"}).status_code == 200
    assert get(server, "/options").json()["sd_model_checkpoint"].startswith("tiny-sd1.safetensors [")
    overridden = post(server, "/txt2img", {"prompt": "x", "override_settings": {
        "sd_model_checkpoint": "tiny-sd2-v", "CLIP_stop_at_last_layers": 2}, **SMALL}).json()
    assert json.loads(overridden["info"])["sd_model_name"] == "tiny-sd2-v"
    assert "Clip skip: 2" in json.loads(overridden["info"])["infotexts"][0]
    after = post(server, "/txt2img", {"prompt": "x", **SMALL}).json()
    assert json.loads(after["info"])["sd_model_name"] == "tiny-sd1"
    assert get(server, "/options").json()["CLIP_stop_at_last_layers"] == 1
    assert post(server, "/options", {"send_seed": False}).status_code == 200
    assert get(server, "/options").json()["send_seed"] is False
    post(server, "/options", {"send_seed": True})


def test_webuiapi_client(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=3)
    result = api.txt2img(prompt="a cube", seed=5, width=64, height=64)
    assert result.image.size == (64, 64)
    assert result.info["all_seeds"] == [5]
    assert api.util_get_model_names()


def start_slow_job(server, until, body=None):
    """Start a 3-batch, 60-step job in a thread; return (thread, result dict) once `until(progress)`."""
    result = {}

    def long_job():
        try:
            result["response"] = post(server, "/txt2img", {"prompt": "slow", "n_iter": 3, "steps": 60, "width": 64,
                                                           "height": 64, "seed": 1, **(body or {})})
        except requests.ConnectionError as e:  # the server went away (shutdown test)
            result["error"] = e

    thread = threading.Thread(target=long_job)
    thread.start()
    deadline = time.time() + 60
    seen = None
    while time.time() < deadline:
        seen = get(server, "/progress", params={"skip_current_image": True}).json()
        if until(seen):
            break
        time.sleep(0.05)
    result["progress"] = seen
    return thread, result


def test_progress_and_interrupt_mid_job(server):
    idle = get(server, "/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    thread, result = start_slow_job(
        server, lambda seen: seen["state"]["job_no"] >= 1 and seen["state"]["sampling_step"] >= 1)
    seen = result["progress"]
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 60
    assert seen["state"]["job_count"] == 3
    with_preview = get(server, "/progress").json()  # a live preview every 10 steps (Approx cheap)
    assert with_preview["current_image"] is None or decode(with_preview["current_image"]).size == (8, 8)
    deadline = time.time() + 30
    while with_preview["current_image"] is None and time.time() < deadline:
        with_preview = get(server, "/progress").json()
    assert decode(with_preview["current_image"]).size == (8, 8)
    started = time.time()
    assert post(server, "/interrupt").json() == {}
    thread.join(timeout=60)
    assert time.time() - started < 10
    response = result["response"]
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 1  # the first batch was finished, the second stopped
    assert "Interrupted" in info["comments"]
    assert get(server, "/progress").json()["progress"] == 0
    assert post(server, "/txt2img", {"prompt": "after", **SMALL}).status_code == 200


def test_jobs_from_several_clients_all_finish(server):
    results = []

    def one(i):
        results.append(post(server, "/txt2img", {"prompt": f"p{i}", "seed": i, **SMALL}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200, 200, 200]


@pytest.fixture(scope="module")
def secured(data_dir):
    proc = ServerProcess(data_dir, "--api", "--api-auth", "alice:s3:cret", "--gradio-auth", "bob:pw")
    try:
        yield proc.wait_ready(auth=("alice", "s3:cret"))
    finally:
        proc.stop()


def test_api_auth(secured):
    response = get(secured, "/sd-models")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Basic"
    assert response.json() == {"detail": "Incorrect username or password"}
    assert get(secured, "/sd-models", auth=("alice", "wrong")).status_code == 401
    assert get(secured, "/sd-models", auth=("alice", "s3:cret")).status_code == 200
    assert get(secured, "/sd-models", auth=("bob", "pw")).status_code == 401
    flags = get(secured, "/cmd-flags", auth=("alice", "s3:cret")).json()
    assert flags["api_auth"] == "***" and flags["gradio_auth"] == "***"
    # the UI asks for its own login
    assert requests.get(secured.url + "/config", timeout=10).status_code == 401


def test_nowebui_serves_the_api_alone(data_dir):
    proc = ServerProcess(data_dir, "--nowebui", "--skip-load-model-at-start")
    try:
        proc.wait_ready()
        assert requests.get(proc.url + "/", timeout=10).status_code == 404
        assert get(proc, "/sd-models").status_code == 200
    finally:
        proc.stop()


def test_sigterm_during_a_long_job_stops_the_server_within_seconds(data_dir):
    proc = ServerProcess(data_dir, "--api")
    try:
        proc.wait_ready()
        thread, result = start_slow_job(proc, lambda seen: seen["state"]["sampling_step"] >= 1,
                                        body={"n_iter": 50, "steps": 150})  # minutes if left to run
        assert result["progress"]["state"]["sampling_step"] >= 1
        proc.proc.send_signal(signal.SIGTERM)
        started = time.time()
        proc.proc.wait(timeout=30)
        assert time.time() - started < 20
        assert "Stopping: interrupting the current job" in proc.output()
        thread.join(timeout=30)
    finally:
        proc.stop()


def test_embeddings_listing_and_refresh(server, data_dir):
    import torch
    from safetensors.torch import save_file
    folder = data_dir / "embeddings"
    save_file({"emb_params": torch.zeros(3, 768)}, str(folder / "wide.safetensors"))
    assert post(server, "/options", {"sd_model_checkpoint": "tiny-sd1"}).status_code == 200
    save_file({"emb_params": torch.zeros(2, 32)}, str(folder / "fits.safetensors"))  # tiny SD1 width
    try:
        assert post(server, "/refresh-embeddings").status_code == 200
        listing = get(server, "/embeddings").json()
        assert set(listing) == {"loaded", "skipped"}
        assert listing["skipped"]["wide"] == {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                              "shape": 768, "vectors": 3}
        assert listing["loaded"]["fits"]["vectors"] == 2
    finally:
        (folder / "wide.safetensors").unlink()
        (folder / "fits.safetensors").unlink()


def test_samplers_schedulers_and_legacy_names(server):
    samplers = get(server, "/samplers").json()
    assert [s["name"] for s in samplers][:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"] and len(samplers) == 20
    sde = next(s for s in samplers if s["name"] == "DPM++ SDE")
    assert sde["aliases"] == ["k_dpmpp_sde"]
    assert sde["options"]["scheduler"] == "karras" and sde["options"]["second_order"] == "True"
    schedulers = get(server, "/schedulers").json()
    assert len(schedulers) == 12
    assert {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
            "need_inner_model": False} in schedulers
    info = json.loads(post(server, "/txt2img", {"prompt": "x", "sampler_name": "DPM++ 2M Karras", **SMALL})
                      .json()["info"])
    assert info["sampler_name"] == "DPM++ 2M" and "Schedule type: Karras" in info["infotexts"][0]
    info = json.loads(post(server, "/txt2img", {"prompt": "x", "sampler_name": "k_euler_a",
                                                "scheduler": "exponential", **SMALL}).json()["info"])
    assert "Sampler: Euler a, Schedule type: Exponential" in info["infotexts"][0]
    bad = post(server, "/txt2img", {"prompt": "x", "scheduler": "Karas", **SMALL})
    assert bad.status_code == 422 and "Karras" in bad.json()["detail"]


def test_hires_fix_and_refiner_through_the_api(server):
    modes = [m["name"] for m in get(server, "/latent-upscale-modes").json()]
    assert modes == ["Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                     "Latent (nearest)", "Latent (nearest-exact)"]
    assert [u["name"] for u in get(server, "/upscalers").json()][:3] == ["None", "Lanczos", "Nearest"]
    body = {"prompt": "x", "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Lanczos",
            "override_settings": {"sd_model_checkpoint": "tiny-sd1"}, **SMALL}
    data = post(server, "/txt2img", body).json()
    assert decode(data["images"][0]).size == (96, 96)
    info = json.loads(data["info"])
    assert "Denoising strength: 0.7" in info["infotexts"][0] and "Hires upscaler: Lanczos" in info["infotexts"][0]
    # pre-2023 form: width/height are the final size
    legacy = post(server, "/txt2img", {"prompt": "x", "enable_hr": True, "firstphase_width": 64,
                                       "firstphase_height": 64, "width": 128, "height": 64, "steps": 2}).json()
    assert decode(legacy["images"][0]).size == (128, 64)
    bad = post(server, "/txt2img", {**body, "hr_upscaler": "4x-NoSuchModel"})
    assert bad.status_code == 422 and "Upscaler '4x-NoSuchModel' not found" in bad.json()["detail"]
    bad = post(server, "/txt2img", {**body, "hr_upscaler": "ESRGAN_4x"})  # known name, weights absent
    assert bad.status_code == 422 and "Upscaler 'ESRGAN_4x' needs ESRGAN_4x.pth in" in bad.json()["detail"]
    bad = post(server, "/txt2img", {"prompt": "x", "refiner_checkpoint": "nope", **SMALL})
    assert bad.status_code == 422
    refined = post(server, "/txt2img", {"prompt": "x", "refiner_checkpoint": "tiny-sd2-v",
                                        "refiner_switch_at": 0.5, **SMALL}).json()
    assert "Refiner: tiny-sd2-v [" in json.loads(refined["info"])["infotexts"][0]


def test_skip_abandons_only_the_current_batch(server):
    thread, result = start_slow_job(server, lambda seen: seen["state"]["job_no"] == 0 and
                                    seen["state"]["sampling_step"] >= 1 and seen["state"]["job_count"] == 3)
    assert post(server, "/skip").status_code == 200
    thread.join(timeout=120)
    info = json.loads(result["response"].json()["info"])
    assert len(result["response"].json()["images"]) == 2  # batch 1 skipped, batches 2 and 3 made
    assert info["all_seeds"] == [1, 2, 3]


def test_infotext_field_fills_unset_fields_and_settings(server):
    infotext = ("a lighthouse\nNegative prompt: fog\nSteps: 4, Sampler: Euler a, Schedule type: Karras, "
                "CFG scale: 5.5, Seed: 321, Size: 64x96, Clip skip: 2, ENSD: 31337")
    data = post(server, "/txt2img", {"infotext": infotext, "steps": 3}).json()
    info = json.loads(data["info"])
    assert info["prompt"] == "a lighthouse" and info["negative_prompt"] == "fog"
    assert info["steps"] == 3  # set by the client: the infotext does not override it
    assert info["seed"] == 321 and info["cfg_scale"] == 5.5 and (info["width"], info["height"]) == (64, 96)
    text = info["infotexts"][0]
    assert "Sampler: Euler a, Schedule type: Karras" in text and "Clip skip: 2" in text and "ENSD: 31337" in text
    assert data["parameters"]["seed"] == 321
    assert get(server, "/options").json()["CLIP_stop_at_last_layers"] == 1  # only for that job


def test_firstpass_image_skips_the_first_pass(server):
    import base64 as b64
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    body = {"prompt": "x", "enable_hr": True, "hr_scale": 2, "denoising_strength": 0.0, "hr_upscaler": "Lanczos",
            "seed": 5, "firstpass_image": b64.b64encode(buffer.getvalue()).decode(), **SMALL}
    image = decode(post(server, "/txt2img", body).json()["images"][0])
    assert image.size == (128, 128)
    # nothing was sampled: another prompt gives the same picture, another first-pass image does not
    other_prompt = decode(post(server, "/txt2img", {**body, "prompt": "something else"}).json()["images"][0])
    assert other_prompt.tobytes() == image.tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 30, 200)).save(buffer, format="PNG")
    blue = decode(post(server, "/txt2img", {**body, "firstpass_image": b64.b64encode(buffer.getvalue()).decode()})
                  .json()["images"][0])
    assert blue.tobytes() != image.tobytes()
    bad = post(server, "/txt2img", {**body, "firstpass_image": "not an image"})
    assert bad.status_code == 422 and bad.json()["detail"] == "Invalid encoded image"


def test_cond_and_uncond_can_run_as_separate_batches(server):
    together = post(server, "/txt2img", {"prompt": "x", "seed": 3, **SMALL}).json()
    apart = post(server, "/txt2img", {"prompt": "x", "seed": 3, **SMALL,
                                      "override_settings": {"batch_cond_uncond": False}}).json()
    a = decode(together["images"][0]).convert("RGB")
    b = decode(apart["images"][0]).convert("RGB")
    assert max(abs(x - y) for pa, pb in zip(a.getdata(), b.getdata()) for x, y in zip(pa, pb)) <= 1


def test_out_of_range_strengths_and_hires_sizes_are_refused(server):
    cases = [({"subseed_strength": 3}, "variation strength must be between 0 and 1"),
             ({"enable_hr": True, "denoising_strength": 5}, "denoising strength must be between 0 and 1"),
             ({"enable_hr": True, "hr_second_pass_steps": -2}, "hires steps cannot be negative"),
             ({"enable_hr": True, "hr_scale": 200}, "Hires fix would sample at 12800x12800"),
             ({"restore_faces": True}, "CodeFormer face restoration needs its weights: put codeformer-v0.1.0.pth"),
             ({"override_settings": {"face_restoration": True, "face_restoration_model": "GFPGAN"}},
              "GFPGAN face restoration needs its weights: put GFPGANv1.4.pth")]
    for fields, message in cases:
        response = post(server, "/txt2img", {"prompt": "x", **SMALL, **fields})
        assert response.status_code == 422 and message in response.json()["detail"], (fields, response.text)


def test_options_outside_a_slider_range_are_422_naming_key_and_range_and_change_nothing(server):
    before = get(server, "/options").json()
    response = post(server, "/options", {"samples_format": "jpg", "CLIP_stop_at_last_layers": 50})
    assert response.status_code == 422
    assert response.json()["detail"] == \
        "Setting 'CLIP_stop_at_last_layers' cannot take the value 50: expected a number from 1 to 12"
    response = post(server, "/options", {"jpeg_quality": "high"})
    assert response.status_code == 422
    assert response.json()["detail"] == \
        "Setting 'jpeg_quality' cannot take the value 'high': expected a number from 1 to 100"
    after = get(server, "/options").json()
    for key in ("samples_format", "CLIP_stop_at_last_layers", "jpeg_quality"):
        assert after[key] == before[key], key
    response = post(server, "/txt2img", {"prompt": "x", "override_settings": {"token_merging_ratio": 2}, **SMALL})
    assert response.status_code == 422 and response.json()["detail"] == \
        "Setting 'token_merging_ratio' cannot take the value 2: expected a number from 0 to 0.9"
