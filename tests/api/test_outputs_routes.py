"""POST /sdapi/v1/png-info and GET /sdapi/v1/prompt-styles over real HTTP (a uvicorn server on
127.0.0.1 serving only this router), plus the PNG Info tab's pure helpers."""
import base64
import io
import threading
import time

import pytest
import requests
import uvicorn
from fastapi import FastAPI
from PIL import Image

from modules import infotext_utils, shared, styles
from modules.api.outputs_routes import create_router
from tests.conftest import free_port

INFO = ("cinematic still of a harbor, moody\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 512x768, Clip skip: 2")
STYLES_CSV = "name,prompt,negative_prompt\nFilm,\"cinematic still of {prompt}, moody\",\nPlain,plain,\n"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The router on a bare FastAPI app, served by uvicorn in a thread; styles from a temp file."""
    styles_file = tmp_path_factory.mktemp("styles") / "styles.csv"
    styles_file.write_text(STYLES_CSV, encoding="utf-8")
    saved = shared.cmd_opts.styles_file
    shared.cmd_opts.styles_file = [str(styles_file)]
    app = FastAPI()
    app.include_router(create_router())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}/sdapi/v1"
    server.should_exit = True
    thread.join(timeout=10)
    shared.cmd_opts.styles_file = saved
    styles.reset_database()


def encoded(image: Image.Image, fmt="PNG", **save_args) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_info(api, image_b64):
    return requests.post(f"{api}/png-info", json={"image": image_b64}, timeout=30)


def test_png_info_reads_png_chunks(api):
    pnginfo = infotext_utils.pnginfo_for(INFO, existing={"extras": "Postprocess upscaler: Lanczos"})
    response = png_info(api, encoded(Image.new("RGB", (8, 8)), pnginfo=pnginfo))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["info"] == INFO
    assert data["items"] == {"extras": "Postprocess upscaler: Lanczos"}
    params = data["parameters"]
    assert params["Steps"] == "20" and params["Size-1"] == "512" and params["Size-2"] == "768"
    assert params["Clip skip"] == "2" and params["Negative prompt"] == "blurry"
    # the saved style Film is recognised in the prompt (infotext_styles = "Apply if any")
    assert params["Prompt"] == "a harbor" and params["Styles array"] == ["Film"]


def test_png_info_accepts_data_uri_and_exif(api):
    jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG", exif=infotext_utils.exif_bytes_for(INFO))
    response = png_info(api, "data:image/jpeg;base64," + jpeg)
    assert response.status_code == 200, response.text
    assert response.json()["info"] == INFO


def test_png_info_without_metadata_has_defaults(api):
    data = png_info(api, encoded(Image.new("RGB", (8, 8)))).json()
    assert data["info"] == "" and data["items"] == {}
    assert data["parameters"]["Clip skip"] == "1" and data["parameters"]["Prompt"] == ""
    assert png_info(api, "").json()["info"] == ""  # A1111 answers an empty string with empty info


@pytest.mark.parametrize("payload", ["not base64 at all!", base64.b64encode(b"no image here").decode(),
                                     "data:image/png;base64,AAAA"])
def test_png_info_rejects_bad_images(api, payload):
    response = png_info(api, payload)
    assert response.status_code == 422
    assert response.json()["detail"] == "Invalid encoded image"


def test_prompt_styles_lists_the_database(api):
    response = requests.get(f"{api}/prompt-styles", timeout=30)
    assert response.status_code == 200
    assert response.json() == [
        {"name": "Film", "prompt": "cinematic still of {prompt}, moody", "negative_prompt": ""},
        {"name": "Plain", "prompt": "plain", "negative_prompt": ""},
    ]


# -- the PNG Info tab ----------------------------------------------------------------------------------

KEYS = ["Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size-1", "Size-2",
        "Denoising strength"]


@pytest.fixture
def no_styles(tmp_path, monkeypatch):
    monkeypatch.setattr(shared.cmd_opts, "styles_file", [str(tmp_path / "none.csv")])
    yield
    styles.reset_database()


def fields_from_infotext(text, keys, skip=None):
    from modules.ui.png_info import fields_from_params, pasted_params
    return fields_from_params(pasted_params(text), keys, skip)


def test_fields_from_infotext(no_styles):
    values = fields_from_infotext(INFO, KEYS)
    assert values == ["cinematic still of a harbor, moody", "blurry", 20, "DPM++ 2M", "Karras", 7.5, 42, 512, 768,
                      None]
    with shared.opts.override({"send_seed": False, "send_size": False}):
        assert fields_from_infotext(INFO, ["Seed", "Size-1", "Size-2", "Steps"]) == [None, None, None, 20]
    with shared.opts.override({"infotext_skip_pasting": ["Steps", "CFG scale"]}):
        assert fields_from_infotext(INFO, ["Steps", "CFG scale", "Seed"]) == [None, None, 42]
    assert fields_from_infotext(INFO, ["Prompt", "Seed"], skip=["Seed"]) == ["cinematic still of a harbor, moody", None]
    assert fields_from_infotext("", ["Prompt"]) == [None]


def test_run_pnginfo_html(no_styles):
    from modules.ui.png_info import run_pnginfo
    image = Image.open(io.BytesIO(base64.b64decode(encoded(Image.new("RGB", (4, 4)), pnginfo=infotext_utils.pnginfo_for(
        INFO, existing={"extras": "<b>up</b>"})))))
    text, html = run_pnginfo(image)
    assert text == INFO and "&lt;b&gt;up&lt;/b&gt;" in html and "extras" in html
    assert run_pnginfo(None) == ("", "")
    assert "Nothing found" in run_pnginfo(Image.new("RGB", (4, 4)))[1]


def test_ui_pieces_build_with_gradio():
    import gradio as gr
    from modules.ui import png_info, save_outputs
    with gr.Blocks() as demo:
        with gr.Tabs():
            parts = png_info.create_tab()
            with gr.Tab("txt2img", id="txt2img"):
                gallery = gr.Gallery(format="png")
                infotexts = gr.State([])
                buttons = save_outputs.create_save_buttons(gallery, infotexts)
    assert set(parts["send_buttons"]) == {"txt2img", "img2img", "inpaint", "extras"}
    assert parts["send_buttons"]["inpaint"].elem_id == "pnginfo_send_to_inpaint"
    assert parts["image"].elem_id == "pnginfo_image"
    assert buttons["save"].elem_id == "save_txt2img" and buttons["download_files"].elem_id == "download_files_txt2img"
    assert demo is not None
