"""Schema fuzz (issue 14 part 7): every route of the server's own OpenAPI schema is sent requests
drawn from that schema (valid ones, edge values, and broken ones: tests/api/schema_values.py)
against a real server. No answer may be a 500 (or any 5xx other than the spec's 501/503/507, api.md
§5), every error says what is wrong, no request may hang, and the server still answers and makes an
image afterwards. Bounded: a fixed seed, a few requests per route, generation sizes clamped small.
Routes that end the server (only with --api-server-stop, which this server lacks) are not sent."""
import base64
import io
import json
import time

import pytest
import requests
from PIL import Image

from tests.api.schema_values import SchemaValues
from tests.conftest import ServerProcess

SEED = 14
BODY_REQUESTS = 14       # per route with a request body
QUERY_REQUESTS = 6       # per route with query parameters only
PLAIN_REQUESTS = 1       # per route without input
REQUEST_TIMEOUT = 30     # a request that takes longer counts as a hang
STOPPING = ("/server-kill", "/server-restart", "/server-stop")
# 5xx the spec gives on purpose: not implemented, unavailable (no weights / no model), out of memory
SPEC_5XX = (501, 503, 507)
# the largest value a drawn request may carry in these fields, so that every job stays tiny
CLAMPS = {
    "steps": 2, "width": 64, "height": 64, "batch_size": 2, "n_iter": 1, "hr_scale": 1.5,
    "hr_second_pass_steps": 2, "hr_resize_x": 96, "hr_resize_y": 96, "firstphase_width": 64,
    "firstphase_height": 64, "seed_resize_from_w": 64, "seed_resize_from_h": 64, "mask_blur": 8,
    "mask_blur_x": 8, "mask_blur_y": 8, "inpaint_full_res_padding": 16, "upscaling_resize": 2,
    "upscaling_resize_w": 96, "upscaling_resize_h": 96, "controlnet_processor_res": 64,
    "max_train_steps": 2, "max_train_epochs": 1, "train_batch_size": 1, "num_class_images": 1,
    "training_width": 64, "training_height": 64, "preview_steps": 2, "preview_width": 64,
    "preview_height": 64, "gradient_step": 2, "num_vectors_per_token": 4,
    "max_bucket_reso": 64, "min_bucket_reso": 64, "interrogate_clip_max_length": 8,
}
# fields set small where a drawn body leaves them out
SMALL_DEFAULTS = {"/sdapi/v1/txt2img": ("steps", "width", "height"),
                  "/sdapi/v1/img2img": ("steps", "width", "height"),
                  "/sdapi/v1/train/embedding": ("steps", "training_width", "training_height", "preview_steps"),
                  "/sdapi/v1/train/lora": ("max_train_steps",)}
# settings that name folders on this machine: drawn values would write outside the data folder
PATH_SETTINGS = ("outdir_", "temp_dir", "_path", "_dir", "directory", "filename")


def _tiny_png() -> str:
    buffer = io.BytesIO()
    Image.effect_noise((32, 32), 40).convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server of its own: the fuzz changes settings and writes files (merges, embeddings)."""
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("fuzz-data")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    write_tiny_checkpoint("sd1", root / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", seed=0)
    proc = ServerProcess(root, "--api")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def _names(server) -> list[str]:
    """The server's own names, so that drawn requests reach the code behind the lookups."""
    def get(path):
        return requests.get(server.url + path, timeout=30).json()
    names = []
    for path, keys in (("/sdapi/v1/sd-models", ("title", "model_name")), ("/sdapi/v1/samplers", ("name",)),
                       ("/sdapi/v1/schedulers", ("name", "label")), ("/sdapi/v1/upscalers", ("name",)),
                       ("/sdapi/v1/latent-upscale-modes", ("name",)), ("/sdapi/v1/face-restorers", ("name",)),
                       ("/sdapi/v1/sd-vae", ("model_name",))):
        names += [item[key] for item in get(path) for key in keys if isinstance(item.get(key), str)]
    names += get("/controlnet/module_list").get("module_list", [])[:5]
    scripts = get("/sdapi/v1/scripts")
    names += scripts.get("txt2img", [])[:5] + scripts.get("img2img", [])[:5]
    png = _tiny_png()
    return names + [png, "data:image/png;base64," + png, "clip", "deepbooru", "Weighted sum", "Add difference"]


def _operations(spec: dict):
    for path, methods in sorted(spec["paths"].items()):
        if path.endswith(STOPPING):
            continue
        for method, operation in sorted(methods.items()):
            yield path, method, operation


def _clamp(value):
    """Keep drawn sizes small at any depth; types and everything else stay as drawn."""
    if isinstance(value, list):
        return [_clamp(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        limit = CLAMPS.get(key)
        if limit is not None and isinstance(item, (int, float)) and not isinstance(item, bool) and item > limit:
            item = limit
        out[key] = _clamp(item)
    out.pop("save_images", None)
    return out


def _request(values: SchemaValues, path: str, operation: dict) -> tuple[str, dict, object]:
    url_path, query = path, {}
    for parameter in operation.get("parameters", []):
        if not parameter.get("required") and values.random.random() < 0.3:
            continue
        value = values.valid(parameter.get("schema", {})) if values.random.random() < 0.7 else values.anything(1)
        if parameter["in"] == "path":
            url_path = url_path.replace("{" + parameter["name"] + "}", requests.utils.quote(str(value), safe=""))
        elif parameter["in"] == "query":
            query[parameter["name"]] = json.dumps(value) if isinstance(value, (dict, list)) or value is None else value
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return url_path, query, None
    body = _clamp(values.body(schema, path == "/sdapi/v1/options"))
    if isinstance(body, dict):  # a field left out takes its default, which may be large (512 px, 20 steps)
        for key in SMALL_DEFAULTS.get(path, ()):
            body.setdefault(key, CLAMPS[key])
    return url_path, query, body


def _count(operation: dict) -> int:
    if operation.get("requestBody"):
        return BODY_REQUESTS
    return QUERY_REQUESTS if operation.get("parameters") else PLAIN_REQUESTS


def _check(response, where: str):
    status = response.status_code
    assert status < 500 or status in SPEC_5XX, where
    if status >= 400:
        body = response.json()
        assert body.get("detail"), where  # the message (a string) or FastAPI's list of field errors


def _alive(server, where: str):
    assert server.proc.poll() is None, f"server died after {where}\n{server.output()[-3000:]}"
    assert requests.get(server.url + "/internal/ping", timeout=REQUEST_TIMEOUT).status_code == 200, where


def test_every_route_survives_a_schema_fuzz(fuzz_server):
    server = fuzz_server
    spec = requests.get(server.url + "/openapi.json", timeout=30).json()
    routes = list(_operations(spec))
    assert ("/sdapi/v1/txt2img", "post") in [(path, method) for path, method, _ in routes]
    settings_before = requests.get(server.url + "/sdapi/v1/options", timeout=30).json()
    fuzzable_settings = {key: value for key, value in settings_before.items()
                         if not any(part in key for part in PATH_SETTINGS)}
    values = SchemaValues(spec, _names(server), fuzzable_settings, SEED)
    started, sent, statuses = time.time(), 0, {}
    for path, method, operation in routes:
        for _ in range(_count(operation)):
            url_path, query, body = _request(values, path, operation)
            where = f"{method.upper()} {url_path} query={query!r:.200} body={json.dumps(body)[:600]}"
            kwargs = {"params": query, "timeout": REQUEST_TIMEOUT}
            if body is not None:
                kwargs.update(data=json.dumps(body), headers={"content-type": "application/json"})
            try:
                response = requests.request(method.upper(), server.url + url_path, **kwargs)
            except requests.Timeout:
                pytest.fail(f"no answer in {REQUEST_TIMEOUT} s: {where}")
            _check(response, f"{where}\n-> {response.status_code} {response.text[:600]}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            sent += 1
        _alive(server, f"{method.upper()} {path}")
    elapsed = time.time() - started
    print(f"schema fuzz: {sent} requests over {len(routes)} routes in {elapsed:.1f} s, statuses {statuses}")

    # the drawn settings are put back; the server still makes an image
    restore = {key: value for key, value in settings_before.items() if key in fuzzable_settings}
    assert requests.post(server.url + "/sdapi/v1/options", json=restore, timeout=60).status_code == 200
    response = requests.post(server.url + "/sdapi/v1/txt2img", timeout=120,
                             json={"prompt": "after the fuzz", "steps": 2, "width": 64, "height": 64})
    assert response.status_code == 200, response.text[:600]
    assert len(response.json()["images"]) == 1
    assert statuses.get(200, 0) > sent // 5, statuses  # the draws reach past validation, too
