"""Saving images (generation.md §10-§13): names, folders, formats, atomic writes, grids, Save button."""
import dataclasses
import datetime
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from modules import images, infotext_utils, shared, styles
from modules.images import FilenameGenerator, sanitize_filename_part

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFO = "a cat on a mat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 7.0, Seed: 42, Size: 64x48"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A throw-away data folder; relative output folders resolve under it."""
    monkeypatch.setattr(shared, "paths", dataclasses.replace(
        shared.paths, data=str(tmp_path), outputs=str(tmp_path / "outputs"),
        params_file=str(tmp_path / "params.txt")))
    return tmp_path


def job(**kwargs):
    fields = dict(prompt="a cat on a mat", negative_prompt="blurry", seed=42, all_seeds=[42, 43, 44, 45],
                  all_prompts=["a cat on a mat"] * 4, steps=20, cfg_scale=7.0, width=64, height=48,
                  sampler_name="Euler", scheduler="Automatic", styles=[], batch_size=2, n_iter=2, iteration=1,
                  batch_index=1, denoising_strength=None, user=None, job_timestamp="20240102030405",
                  sd_model_name="tiny-sd1", sd_model_hash="abcdef1234", sd_model=None)
    fields.update(kwargs)
    return SimpleNamespace(**fields)


def expand(pattern, p=None, seed=42, prompt="a cat on a mat", image=None, **kwargs):
    return FilenameGenerator(p, seed, prompt, image, **kwargs).apply(pattern)


def picture(w=64, h=48, color=(200, 30, 30), mode="RGB"):
    return Image.new(mode, (w, h), color)


def files_in(folder):
    return sorted(os.listdir(folder))


# -- sanitising ------------------------------------------------------------------------------------

def test_sanitize_replaces_reserved_characters_and_trims():
    assert sanitize_filename_part('a b#c<d>e:f"g/h\\i|j?k*l\nm\rn\to') == "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o"
    assert sanitize_filename_part("  keep spaces ", replace_spaces=False) == "keep spaces"
    assert sanitize_filename_part("ends with dots...") == "ends_with_dots"
    assert sanitize_filename_part("bell\x07null\x00") == "bell_null_"
    assert sanitize_filename_part(None) is None


def test_sanitize_length_and_unix_mode(monkeypatch):
    monkeypatch.setattr(shared.cmd_opts, "filenames_max_length", 10)
    assert sanitize_filename_part("abcdefghijklmnop") == "abcdefghij"
    assert sanitize_filename_part("abcdefgh. xyz", replace_spaces=False) == "abcdefgh"  # cut, then trimmed
    monkeypatch.setattr(shared.cmd_opts, "unix_filenames_sanitization", True)
    assert sanitize_filename_part('a:b/c?', replace_spaces=False) == "a:b_c?"


# -- pattern tags (§11.2) ---------------------------------------------------------------------------

def test_seed_and_number_tags():
    p = job()
    assert expand("[seed]", p) == "42"
    assert expand("[seed_first]-[seed_last]", p) == "42-45"
    assert expand("[seed_first]-[seed_last]", job(batch_size=1)) == "42"  # nothing also drops "-"
    assert expand("[steps] [cfg] [width]x[height]", p) == "20 7.0 64x48"
    assert expand("[width]x[height]", p, image=picture(10, 20)) == "10x20"  # the saved image's size
    assert expand("img-[batch_number]", p) == "img-2"
    assert expand("img-[batch_number]", job(batch_size=1)) == "img"
    assert expand("[batch_size]", p) == "2"
    assert expand("g[generation_number]", p) == "g4"  # iteration 1 * 2 + index 1 + 1
    assert expand("g-[generation_number]", job(n_iter=1, batch_size=1)) == "g"
    assert expand("z-[batch_number]-[generation_number]", p, zip=True) == "z"


def test_batch_index_falls_back_to_the_seed_position():
    p = job(batch_index=None, all_seeds=[42, 43])
    assert expand("[batch_number]", p, seed=43) == "2"


def test_prompt_tags():
    p = job()
    prompt = "A cat: on a <mat>, (best)"
    assert expand("[prompt]", p, prompt=prompt) == "A_cat__on_a__mat_,_(best)"
    assert expand("[prompt_spaces]", p, prompt=prompt) == "A cat_ on a _mat_, (best)"
    with shared.opts.override({"directories_max_prompt_words": 3}):
        assert expand("[prompt_words]", p, prompt=prompt) == "A cat on"
    assert expand("[prompt_words]", p, prompt=" ,, ") == "empty"
    digest = hashlib.sha256(b"a cat on a mat").hexdigest()
    assert expand("[prompt_hash]", p) == digest[:8]
    assert expand("[prompt_hash<4>]", p) == digest[:4]
    assert expand("[negative_prompt_hash]", p) == hashlib.sha256(b"blurry").hexdigest()[:8]
    assert expand("[full_prompt_hash<12>]", p) == hashlib.sha256(b"a cat on a mat blurry").hexdigest()[:12]
    assert expand("[hasprompt<cat|nocat><dog|nodog><bird>]", p) == "catnodog"


def test_prompt_no_styles(tmp_path, monkeypatch):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nfilm,\"film still of {prompt}, grainy\",\nwarm,warm light,\n",
                    encoding="utf-8")
    monkeypatch.setattr(styles, "get_database", lambda: styles.StyleDatabase([str(path)]))
    p = job(styles=["film", "warm"])
    assert expand("[prompt_no_styles]", p, prompt="film still of a cat, grainy, warm light") == "a cat"
    assert expand("[styles]", p) == "film, warm"
    assert expand("[styles]", job(styles=[])) == "None"


def test_model_sampler_and_setting_tags():
    p = job()
    assert expand("[sampler]", p) == "Euler"
    assert expand("[sampler_scheduler]", p) == "Euler Automatic"
    assert expand("[sampler_scheduler]", job(scheduler="karras")) == "Euler Karras"
    assert expand("[scheduler]", job(scheduler="sgm_uniform")) == "SGM Uniform"
    assert expand("[model_name]-[model_hash]", p) == "tiny-sd1-abcdef1234"
    assert expand("[job_timestamp]", p) == "20240102030405"
    with shared.opts.override({"CLIP_stop_at_last_layers": 2}):
        assert expand("[clip_skip]", p) == "2"
    assert expand("d[denoising]", job(denoising_strength=0.55)) == "d0.55"
    assert expand("x-[denoising]", p) == "x"
    assert expand("by-[user]", job(user="alice")) == "by-alice"
    assert expand("by-[user]", p) == "by"
    assert expand("[vae_filename]", job(sd_model=SimpleNamespace(loaded_vae_file="/m/VAE/kl-f8.vae.pt"))) == "kl-f8"
    assert expand("[vae_filename]", job(sd_model=SimpleNamespace(loaded_vae_file="/m/VAE/.hidden.pt"))) == "hidden"
    assert expand("[vae_filename]", p) == "NoneType"


def test_date_time_tags():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", expand("[date]"))
    assert expand("[date]") == datetime.date.today().isoformat()
    assert re.fullmatch(r"\d{14}", expand("[datetime]"))
    assert expand("[datetime<%Y>]") == str(datetime.datetime.now().year)
    assert expand("[datetime<%H><UTC>]") == datetime.datetime.now(datetime.timezone.utc).strftime("%H")
    assert expand("[datetime<%H><Not/AZone>]") == datetime.datetime.now().strftime("%H")
    assert expand("[datetime<%Y/%m:%d>]") == datetime.datetime.now().strftime("%Y_%m_%d")  # sanitised


def test_other_tags_and_literals():
    image = picture()
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    assert expand("[image_hash]", image=image) == digest
    assert expand("[image_hash<6>]", image=image) == digest[:6]
    assert expand("[basename]") == "img"
    assert expand("[basename]", basename="grid") == "grid"
    assert expand("a[none]b") == "ab"
    assert expand("[foo]-[SEED]") == "[foo]-42"  # unknown tags stay; names are case-insensitive
    assert expand("[prompt_hash<x>]") == "[prompt_hash<x>]"  # bad argument: kept literally
    assert expand("[[seed]]") == "[42]"
    assert expand("[steps]") == "" and expand("s-[steps]") == "s"  # no job: nothing


# -- folders and names (§11.1) ---------------------------------------------------------------------

def test_default_names_and_day_folder(data):
    image = picture()
    first, _ = images.save_image(image, "outputs/txt2img-images", "", 42, "a cat", info=INFO)
    second, _ = images.save_image(image, "outputs/txt2img-images", "", 43, "a cat", info=INFO)
    day = data / "outputs" / "txt2img-images" / datetime.date.today().isoformat()
    assert (first, second) == (str(day / "00000-42.png"), str(day / "00001-43.png"))
    grid, _ = images.save_image(image, str(day), "grid", 42, "a cat", short_filename=True, grid=True,
                                save_to_dirs=False)
    assert os.path.basename(grid) == "grid-0000.png"
    assert images.get_next_sequence_number(str(day), "") == 2
    assert images.get_next_sequence_number(str(day), "grid") == 1


def test_folder_patterns(data):
    p = job()
    with shared.opts.override({"directories_filename_pattern": "[model_name]/[steps] steps "}):
        path, _ = images.save_image(picture(), str(data), "", 42, "a cat", p=p)
    assert path == str(data / "tiny-sd1" / "20 steps" / "00000-42.png")
    with shared.opts.override({"directories_filename_pattern": ""}):
        path, _ = images.save_image(picture(), str(data), "", 42, "A red, red car!", p=p)
    assert os.path.dirname(path) == str(data / "A red red car")
    with shared.opts.override({"save_to_dirs": False}):
        path, _ = images.save_image(picture(), str(data / "flat"), "", 42, "a cat on a mat", p=p)
    assert path == str(data / "flat" / "00000-42-a cat on a mat.png")  # default decoration without dirs
    with shared.opts.override({"grid_save_to_dirs": False}):
        path, _ = images.save_image(picture(), str(data / "g"), "grid", 42, "x", grid=True, short_filename=True)
    assert path == str(data / "g" / "grid-0000.png")


def test_pattern_suffix_number_and_replace_actions(data):
    folder = str(data / "out")
    with shared.opts.override({"samples_filename_pattern": "[seed]-[steps]", "save_to_dirs": False}):
        path, _ = images.save_image(picture(), folder, "", 42, "x", p=job(), suffix="-mask")
        assert os.path.basename(path) == "00000-42-20-mask.png"
        with shared.opts.override({"save_images_add_number": False}):
            first, _ = images.save_image(picture(color=(1, 1, 1)), folder, "", 42, "x", p=job())
            again, _ = images.save_image(picture(color=(2, 2, 2)), folder, "", 42, "x", p=job())
            assert first == again == os.path.join(folder, "42-20.png")  # Replace (default)
            assert Image.open(again).getpixel((0, 0)) == (2, 2, 2)
            with shared.opts.override({"save_images_replace_action": "Add number suffix"}):
                third, _ = images.save_image(picture(), folder, "", 42, "x", p=job())
                fourth, _ = images.save_image(picture(), folder, "", 42, "x", p=job())
            assert [os.path.basename(third), os.path.basename(fourth)] == ["42-20-1.png", "42-20-2.png"]
    forced, _ = images.save_image(picture(), folder, "", 42, "x", forced_filename="photo", save_to_dirs=False)
    assert forced == os.path.join(folder, "photo.png")
    short, _ = images.save_image(picture(), str(data / "short"), "", 42, "x", short_filename=True,
                                 save_to_dirs=False)
    assert os.path.basename(short) == "00000.png"  # no decoration -> number only, no trailing '-'


def test_long_names_fit_the_file_system(data, monkeypatch):
    folder = str(data / "long")
    with shared.opts.override({"save_to_dirs": False, "save_txt": True}):
        path, txt = images.save_image(picture(), folder, "", 42, "word " * 200, info=INFO)
    name = os.path.basename(path)
    assert name.startswith("00000-42-word word") and len(name) <= 9 + 128 + 4  # part cut to 128
    monkeypatch.setattr(shared.cmd_opts, "filenames_max_length", 1000)
    path, _ = images.save_image(picture(), folder, "", 42, "x", forced_filename="é" * 300)
    assert len(os.fsencode(os.path.basename(path))) <= os.pathconf(folder, "PC_NAME_MAX")
    assert path.endswith(".png") and Image.open(path).size == (64, 48)
    device, _ = images.save_image(picture(), folder, "", 42, "x", forced_filename="CON")
    assert os.path.basename(device) == "_CON.png"


# -- atomic writes and concurrency ------------------------------------------------------------------

def test_concurrent_threads_never_collide(data):
    folder = str(data / "threads")
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                results.append(images.save_image(picture(), folder, "", 7, "x", save_to_dirs=False)[0])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 60
    assert files_in(folder) == [f"{n:05}-7-x.png" for n in range(60)]


WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
from PIL import Image
from modules import images
folder, go, tag = sys.argv[1], sys.argv[2], sys.argv[3]
image = Image.new("RGB", (32, 32), (int(tag), 0, 0))
while not os.path.exists(go):
    time.sleep(0.005)
for _ in range(15):
    print(images.save_image(image, folder, "", 7, "x", info="tag " + tag, save_to_dirs=False)[0])
"""


def test_two_processes_never_collide(data):
    folder = data / "procs"
    go = data / "go"
    script = WORKER.format(root=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(folder), str(go), tag],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("1", "2")]
    time.sleep(0.5)
    go.write_text("")
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    paths = [line for out, _ in outputs for line in out.split()]
    assert len(paths) == len(set(paths)) == 30
    assert files_in(folder) == [f"{n:05}-7-x.png" for n in range(30)]
    tags = {infotext_utils.read_info_from_image(Image.open(path))[0] for path in paths}
    assert tags == {"tag 1", "tag 2"}


def test_failed_encoding_leaves_no_file(data, monkeypatch):
    folder = data / "broken"

    def failing_encode(image, file, fmt, pnginfo, section):
        file.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(images, "_encode", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        images.save_image(picture(), str(folder), "", 1, "x", save_to_dirs=False)
    assert files_in(folder) == []


def test_a_name_taken_after_the_scan_is_never_overwritten(data, monkeypatch):
    folder = data / "keep"
    folder.mkdir()
    (folder / "00000-5-x.png").write_bytes(b"someone else's")
    # another writer took number 0 after our scan of the folder
    monkeypatch.setattr(images, "get_next_sequence_number", lambda path, basename: 0)
    path, _ = images.save_image(picture(), str(folder), "", 5, "x", save_to_dirs=False)
    assert os.path.basename(path) == "00001-5-x.png"
    assert (folder / "00000-5-x.png").read_bytes() == b"someone else's"
    assert files_in(folder) == ["00000-5-x.png", "00001-5-x.png"]  # no temp file left


def test_without_hard_links_names_are_still_claimed_exclusively(data, monkeypatch):
    def no_links(src, dst):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    folder = data / "nolinks"
    threads = [threading.Thread(target=lambda: [images.save_image(picture(), str(folder), "", 3, "x",
                                                                  save_to_dirs=False) for _ in range(5)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert files_in(folder) == [f"{n:05}-3-x.png" for n in range(20)]
    assert all(Image.open(folder / name).size == (64, 48) for name in files_in(folder))


def test_save_callbacks_run_around_the_write(data, monkeypatch):
    seen = []

    class Params:
        def __init__(self, image, p, filename, pnginfo):
            self.image, self.p, self.filename, self.pnginfo = image, p, filename, pnginfo

    def before(params):
        seen.append(("before", os.path.basename(params.filename), os.path.exists(params.filename)))
        params.pnginfo["extra"] = "from a callback"

    def after(params):
        seen.append(("after", os.path.basename(params.filename), os.path.exists(params.filename)))

    fake = SimpleNamespace(ImageSaveParams=Params, before_image_saved_callback=before, image_saved_callback=after)
    monkeypatch.setitem(sys.modules, "modules.script_callbacks", fake)
    path, _ = images.save_image(picture(), str(data), "", 9, "x", info=INFO, save_to_dirs=False)
    assert seen == [("before", "00000-9-x.png", False), ("after", "00000-9-x.png", True)]
    assert Image.open(path).info["extra"] == "from a callback"


# -- formats (§13) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extension,fmt", [("png", "PNG"), ("jpg", "JPEG"), ("jpeg", "JPEG"),
                                           ("webp", "WEBP"), ("avif", "AVIF")])
def test_formats_carry_the_infotext(data, extension, fmt):
    text = INFO.replace("a cat", "a cat ☃ über")
    path, _ = images.save_image(picture(mode="RGBA", color=(1, 2, 3, 128)), str(data), "", 42, "x",
                                extension=extension, info=text, save_to_dirs=False)
    assert path.endswith("." + extension)
    with Image.open(path) as saved:
        assert saved.format == fmt
        assert infotext_utils.read_info_from_image(saved)[0] == text
        if fmt != "PNG":
            assert saved.mode == "RGB"


def test_png_keeps_existing_chunks_and_respects_enable_pnginfo(data):
    path, _ = images.save_image(picture(), str(data), "", 1, "x", info="up", pnginfo_section_name="extras",
                                existing_info={"parameters": INFO, "dpi": (72, 72)}, save_to_dirs=False)
    with Image.open(path) as saved:
        assert saved.info["parameters"] == INFO and saved.info["extras"] == "up"
    with shared.opts.override({"enable_pnginfo": False}):
        for extension in ("png", "jpg"):
            path, _ = images.save_image(picture(), str(data), "", 1, "x", extension=extension, info=INFO,
                                        save_to_dirs=False)
            with Image.open(path) as saved:
                assert infotext_utils.read_info_from_image(saved)[0] is None


def test_quality_lossless_and_16_bit(data):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    sizes = {}
    for quality in (10, 95):
        with shared.opts.override({"jpeg_quality": quality}):
            path, _ = images.save_image(noisy, str(data), "", 1, "x", extension="jpg", save_to_dirs=False)
        sizes[quality] = os.path.getsize(path)
    assert sizes[10] < sizes[95]
    with shared.opts.override({"webp_lossless": True}):
        path, _ = images.save_image(noisy, str(data), "", 1, "x", extension="webp", save_to_dirs=False)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(noisy))
    deep = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    path, _ = images.save_image(deep, str(data), "", 1, "x", extension="jpg", save_to_dirs=False)
    with Image.open(path) as saved:
        assert saved.mode == "L" and saved.getpixel((0, 0)) == 255


def test_too_large_for_jpeg_or_webp_is_saved_as_png(data):
    path, _ = images.save_image(picture(16384, 1), str(data), "", 1, "x", extension="webp", save_to_dirs=False)
    assert path.endswith(".png")
    path, _ = images.save_image(picture(65536, 1), str(data), "", 1, "x", extension="jpg", save_to_dirs=False)
    assert path.endswith(".png")
    path, _ = images.save_image(picture(16383, 1), str(data), "", 1, "x", extension="webp", save_to_dirs=False)
    assert path.endswith(".webp")


def test_export_for_4chan_and_save_txt(data):
    with shared.opts.override({"target_side_length": 32, "save_txt": True}):
        path, txt = images.save_image(picture(64, 48), str(data), "", 1, "x", info=INFO, save_to_dirs=False)
    copy = os.path.splitext(path)[0] + ".jpg"
    with Image.open(copy) as small:
        assert small.size == (32, 24)
        assert infotext_utils.read_info_from_image(small)[0] == INFO
    assert open(txt, encoding="utf8").read() == INFO + "\n"
    with shared.opts.override({"img_downscale_threshold": 0.0}):
        path, txt = images.save_image(picture(64, 48), str(data), "", 2, "x", info=INFO, save_to_dirs=False)
    assert Image.open(os.path.splitext(path)[0] + ".jpg").size == (64, 48) and txt is None
    with shared.opts.override({"export_for_4chan": False, "target_side_length": 32}):
        path, _ = images.save_image(picture(64, 48), str(data), "", 3, "x", save_to_dirs=False)
    assert not os.path.exists(os.path.splitext(path)[0] + ".jpg")


def test_write_params_txt(data):
    images.write_params_txt(INFO)
    assert (data / "params.txt").read_text(encoding="utf8") == INFO
    assert [f for f in os.listdir(data) if f.endswith(".tmp")] == []


# -- grids (§12) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("count,rows,rows_no_empty", [(1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 2, 2), (5, 2, 1),
                                                      (6, 2, 2), (7, 3, 1), (8, 3, 2), (9, 3, 3), (12, 3, 3)])
def test_grid_rows(count, rows, rows_no_empty):
    assert images.grid_rows(count) == rows
    with shared.opts.override({"grid_prevent_empty_spots": True}):
        assert images.grid_rows(count) == rows_no_empty
    with shared.opts.override({"n_rows": 0}):
        assert images.grid_rows(count, batch_size=2) == min(2, count)
    with shared.opts.override({"n_rows": 4}):
        assert images.grid_rows(count) == min(4, count)


def test_image_grid_layout_and_centring():
    imgs = [picture(20, 10, (255, 0, 0)), picture(10, 20, (0, 255, 0)), picture(20, 20, (0, 0, 255))]
    with shared.opts.override({"grid_background_color": "#102030"}):
        grid = images.image_grid(imgs)
    assert grid.size == (40, 40)  # 2 rows x 2 cols of 20x20 cells
    assert grid.getpixel((10, 2)) == (16, 32, 48)  # above the centred 20x10 image
    assert grid.getpixel((10, 10)) == (255, 0, 0)
    assert grid.getpixel((22, 10)) == (16, 32, 48) and grid.getpixel((30, 10)) == (0, 255, 0)
    assert grid.getpixel((10, 30)) == (0, 0, 255)
    assert grid.getpixel((30, 30)) == (16, 32, 48)  # empty spot
    assert images.image_grid(imgs, rows=1).size == (60, 20)
    assert images.image_grid(imgs, rows=9).size == (20, 60)  # never more rows than images


def test_grid_plan_and_job_grid(data):
    assert images.grid_plan(1) == images.GridPlan(False, False, False)
    assert images.grid_plan(2) == images.GridPlan(True, True, True)
    assert images.grid_plan(2, do_not_save_grid=True) == images.GridPlan(False, False, False)
    with shared.opts.override({"grid_only_if_multiple": False, "grid_save": False}):
        assert images.grid_plan(1) == images.GridPlan(True, False, True)
    with shared.opts.override({"grid_save": False, "return_grid": False}):
        assert images.grid_plan(4) == images.GridPlan(False, False, False)

    p = job(outpath_grids=str(data / "grids"), is_txt2img=True, do_not_save_grid=False)
    grid, plan = images.make_job_grid(p, [picture(), picture(), picture()], INFO)
    assert plan.show and grid.size == (128, 96)
    saved = list((data / "grids").rglob("grid-*.png"))
    assert [f.name for f in saved] == ["grid-0000.png"]
    assert Image.open(saved[0]).info["parameters"] == INFO


# -- the Save / Zip buttons -------------------------------------------------------------------------

def infotext_for(seed):
    return INFO.replace("Seed: 42", f"Seed: {seed}") + ", Model: tiny-sd1, Model hash: abcdef1234"


def test_save_button_copies_selected_image_and_logs(data):
    imgs = [picture(color=(i, 0, 0)) for i in range(3)]
    texts = [infotext_for(s) for s in (10, 11, 12)]
    from modules.ui import save_outputs
    with shared.opts.override({"use_save_to_dirs_for_ui": False}):
        files, message = save_outputs.save_files(imgs, texts, 1, False)
        assert [os.path.basename(f) for f in files] == ["00000-11-a cat on a mat.png"]
        assert "Saved: 00000-11-a cat on a mat.png" in message
        assert infotext_utils.read_info_from_image(Image.open(files[0]))[0] == texts[1]
        with shared.opts.override({"save_selected_only": False}):
            files, _ = save_outputs.save_files(imgs, texts, 1, False)
        assert len(files) == 3
    log_rows = (data / "log" / "images" / "log.csv").read_text(encoding="utf8").splitlines()
    assert log_rows[0] == ",".join(save_outputs.LOG_FIELDS)
    assert log_rows[1] == "a cat on a mat,11,64,48,Euler,7.0,20,00000-11-a cat on a mat.png,blurry,tiny-sd1,abcdef1234"
    assert len(log_rows) == 5


def test_zip_button_zips_the_whole_batch(data):
    from modules.ui import save_outputs
    paths = []
    for seed in (10, 11):  # gallery values are files written by Gradio, with the infotext inside
        path = data / f"g{seed}.png"
        picture().save(path, pnginfo=infotext_utils.pnginfo_for(infotext_for(seed)))
        paths.append((str(path), None))
    with shared.opts.override({"use_save_to_dirs_for_ui": False, "grid_zip_filename_pattern": "[model_name]_[seed]-[seed_last]"}):
        files, _ = save_outputs.save_files(paths, None, 0, True)
    assert os.path.basename(files[0]) == "tiny-sd1_10-11.zip"
    with zipfile.ZipFile(files[0]) as archive:
        assert sorted(archive.namelist()) == ["00000-10-a cat on a mat.png", "00001-11-a cat on a mat.png"]
    assert len(files) == 3
