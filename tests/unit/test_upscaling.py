"""Upscaler registry, spandrel loading, passes, tiling and sizes (extras.md §1, §2, §7)."""
import dataclasses
import os
import types

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

from modules import cmd_args, shared, upscaling
from modules.upscaling import model_cache, tiling, tiny_upscalers
from modules.upscaling import core as upscale_module

EMPTY_LIST = ["None", "Lanczos", "Nearest", "DAT x2", "DAT x3", "DAT x4", "ESRGAN_4x", "R-ESRGAN 4x+",
              "R-ESRGAN 4x+ Anime6B", "ScuNET GAN", "ScuNET PSNR", "SwinIR 4x"]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty models folder, default flags and settings, no tiling unless a test asks."""
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, models=str(tmp_path)))
    monkeypatch.setattr(shared, "cmd_opts", cmd_args.build_parser().parse_args([]))
    # SwinIR's slider starts at 16 (A1111's range, enforced since issue 14): 0 only as a stored value
    monkeypatch.setitem(shared.opts.data, "SWIN_tile", 0)
    with shared.opts.override({"ESRGAN_tile": 0, "DAT_tile": 0}):
        model_cache.clear()
        yield tmp_path
    model_cache.clear()


def image(width=24, height=20, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), mode)


def spandrel_reference(path, img):
    """spandrel's own output for the file, with A1111's BGR convention."""
    descriptor = spandrel.ModelLoader().load_from_file(path)
    x = torch.from_numpy(np.asarray(img, np.float32)[:, :, ::-1] / 255.0).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        y = descriptor(x)[0].permute(1, 2, 0).numpy()[:, :, ::-1]
    return (y * 255).round().astype(np.int16)


def test_empty_folders_list_a1111_names_in_order(models_dir):
    assert upscaling.upscaler_names() == EMPTY_LIST
    entry = upscaling.find_upscaler("R-ESRGAN 4x+")
    assert not entry.available and entry.scale == 4 and entry.required_file == "RealESRGAN_x4plus.pth"


def test_user_files_and_fixed_names(models_dir):
    tiny_upscalers.write("esrgan", str(models_dir / "ESRGAN" / "4x-Foo.pth"))
    tiny_upscalers.write("esrgan", str(models_dir / "RealESRGAN" / "sub" / "RealESRGAN_x4plus.pth"))
    tiny_upscalers.write("swinir", str(models_dir / "SwinIR" / "my swin.pth"))
    (models_dir / "ESRGAN" / "notes.txt").write_text("not a model")
    names = upscaling.upscaler_names()
    assert "4x-Foo" in names and "ESRGAN_4x" not in names
    assert "my swin" in names and "SwinIR 4x" not in names
    assert names.count("R-ESRGAN 4x+") == 1 and "RealESRGAN_x4plus" not in names
    real = upscaling.find_upscaler("R-ESRGAN 4x+")
    assert real.available and real.path.endswith(os.path.join("sub", "RealESRGAN_x4plus.pth"))
    foo = upscaling.find_upscaler("4x-Foo")
    assert (foo.family, foo.scale, foo.model_name) == ("ESRGAN", 4, "ESRGAN_4x")
    with shared.opts.override({"realesrgan_enabled_models": ["R-ESRGAN 2x+"], "dat_enabled_models": []}):
        names = upscaling.upscaler_names()
    assert "R-ESRGAN 4x+" not in names and "R-ESRGAN 2x+" in names and "DAT x2" not in names


def test_models_path_flag_folder_is_scanned_first(models_dir, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("esrgan-elsewhere")
    tiny_upscalers.write("esrgan", str(other / "experiments" / "pretrained_models" / "Zed.pth"))
    tiny_upscalers.write("esrgan", str(models_dir / "ESRGAN" / "Alpha.pth"))
    monkeypatch.setattr(shared, "cmd_opts", cmd_args.build_parser().parse_args(["--esrgan-models-path", str(other)]))
    entries = [e for e in upscaling.list_upscalers() if e.family == "ESRGAN"]
    assert [e.name for e in entries] == ["Alpha", "Zed"]  # listed by name, both found
    assert upscaling.find_upscaler("Zed").path.startswith(str(other))


def test_unknown_and_absent_upscalers_are_clear_errors(models_dir):
    with pytest.raises(upscaling.UnknownUpscaler, match="valid names: None, Lanczos, Nearest"):
        upscaling.upscale(image(), 2, "4x-UltraSharp")
    with pytest.raises(upscaling.UpscalerUnavailable,
                       match=r"'R-ESRGAN 4x\+' needs RealESRGAN_x4plus.pth in .*RealESRGAN \(not downloaded\)"):
        upscaling.upscale(image(), 2, "R-ESRGAN 4x+")
    broken = models_dir / "ESRGAN" / "broken.pth"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a pickle at all")
    with pytest.raises(upscaling.UpscalerUnavailable, match="broken.pth could not be loaded"):
        upscaling.upscale(image(), 2, "broken")


def test_pixel_upscalers_sizes(models_dir):
    assert upscaling.upscale(image(100, 75), 2, "Lanczos").size == (200, 144)
    assert upscaling.upscale(image(100, 75), 2, "Nearest").size == (200, 144)
    src = image(100, 75)
    assert upscaling.upscale(src, 2, "None") is src
    assert upscaling.upscale_to(image(100, 75), 201, 150, "Lanczos").size == (201, 150)


@pytest.mark.parametrize("kind,file_name,kwargs", [
    ("esrgan", "ESRGAN/old.pth", {"scale": 4}),
    ("esrgan", "ESRGAN/new.safetensors", {"scale": 4, "new_layout": True}),
    ("esrgan", "ESRGAN/new2x.pth", {"scale": 2, "new_layout": True}),
    ("compact", "RealESRGAN/realesr-general-x4v3.pth", {}),
    ("swinir", "SwinIR/swin2x.pth", {}),
    ("dat", "DAT/DAT_x2.pth", {}),
    ("hat", "HAT/hat2x.pth", {}),
    ("scunet", "ScuNET/denoise.pth", {}),
])
def test_model_upscale_equals_spandrel(models_dir, kind, file_name, kwargs):
    """Untiled, our path gives spandrel's own output to ±1 level (exact size: ⌊W·s⌋₈ = W·s here)."""
    path = tiny_upscalers.write(kind, str(models_dir / file_name), **kwargs)
    name = {"realesr-general-x4v3.pth": "R-ESRGAN General 4xV3", "DAT_x2.pth": "DAT x2"}.get(
        os.path.basename(file_name), os.path.splitext(os.path.basename(file_name))[0])
    src = image(24, 16)
    factor = spandrel.ModelLoader().load_from_file(path).scale
    enabled = {"realesrgan_enabled_models": ["R-ESRGAN General 4xV3"]}
    with shared.opts.override(enabled):
        out = upscaling.upscale(src, factor, name)
    assert out.size == (24 * factor, 16 * factor)
    diff = np.abs(np.asarray(out, np.int16) - spandrel_reference(path, src))
    assert diff.max() <= 1


def test_passes_until_covered_then_exact_resize(models_dir):
    path = tiny_upscalers.write("esrgan", str(models_dir / "ESRGAN" / "two.pth"), scale=2)
    calls = []
    real = upscale_module.run_model

    def counting(descriptor, img, tile, overlap):
        calls.append(img.size)
        return real(descriptor, img, tile, overlap)
    upscale_module.run_model = counting
    try:
        for scale, expected_calls, size in ((5, 3, (80, 80)), (2, 1, (32, 32)), (1, 1, (16, 16)),
                                            (0.5, 0, (8, 8))):
            calls.clear()
            out = upscaling.upscale(image(16, 16), scale, "two")
            assert (len(calls), out.size) == (expected_calls, size), scale
    finally:
        upscale_module.run_model = real
    assert os.path.exists(path)


def test_tiled_equals_untiled_for_a_pixel_local_model():
    colour = torch.tensor([0.3, 1.2, 0.7]).view(1, 3, 1, 1)

    def local(x):  # nearest 2x, then a per-pixel colour map
        return (torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * colour).clamp(0, 1)
    x = torch.rand(1, 3, 70, 53)
    whole = local(x)
    for tile, overlap, batch in ((16, 4, 1), (32, 8, 3), (24, 0, 2), (40, 39, 1)):
        tiled = tiling.run_tiled(local, x, tile, overlap, batch=batch)
        assert torch.allclose(tiled, whole, atol=1e-6), (tile, overlap)


def test_tile_layout_spreads_evenly_and_respects_limits():
    starts, size = tiling.tile_layout(256, 192, 8)
    assert size <= 192 and starts[0] == 0 and starts[-1] + size == 256 and len(starts) == 2
    assert tiling.tile_layout(100, 192, 8) == ([0], 100)
    starts, size = tiling.tile_layout(1000, 192, 8)
    assert all(b - a <= size - 8 for a, b in zip(starts, starts[1:]))  # every overlap ≥ the setting


def test_tiled_rrdb_close_to_untiled_and_seamless(models_dir):
    tiny_upscalers.write("esrgan", str(models_dir / "ESRGAN" / "rrdb.pth"), scale=2)
    src = image(96, 80, seed=3)
    whole = np.asarray(upscaling.upscale(src, 2, "rrdb"), np.float32)
    with shared.opts.override({"ESRGAN_tile": 40, "ESRGAN_tile_overlap": 8}):
        tiled = np.asarray(upscaling.upscale(src, 2, "rrdb"), np.float32)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 2.0  # levels; the receptive field of a 1-block RRDB is small
    column_error, row_error = diff.mean(axis=(0, 2)), diff.mean(axis=(1, 2))
    assert column_error.max() < 6 * max(diff.mean(), 0.05) + 3
    assert row_error.max() < 6 * max(diff.mean(), 0.05) + 3


def test_alpha_is_kept(models_dir):
    tiny_upscalers.write("compact", str(models_dir / "ESRGAN" / "c4.pth"))
    src = image(16, 12, mode="RGBA")
    out = upscaling.upscale(src, 4, "c4")
    assert out.mode == "RGBA" and out.size == (64, 48)
    expected = np.asarray(src.getchannel("A").resize((64, 48), Image.Resampling.LANCZOS))
    assert np.array_equal(np.asarray(out.getchannel("A")), expected)


def test_loaded_models_are_cached_and_reloaded_when_the_file_changes(models_dir):
    path = tiny_upscalers.write("compact", str(models_dir / "ESRGAN" / "c.pth"))
    first = upscaling.load_model(upscaling.find_upscaler("c"))
    assert upscaling.load_model(upscaling.find_upscaler("c")) is first
    tiny_upscalers.write("compact", path, seed=5)
    os.utime(path, ns=(1, 1))
    assert upscaling.load_model(upscaling.find_upscaler("c")) is not first


def test_out_of_memory_halves_the_tile_then_gives_up():
    class Fake:
        def __init__(self, limit):
            self.model = torch.nn.Conv2d(3, 3, 1)
            self.size_requirements = types.SimpleNamespace(minimum=1)
            self.limit, self.sizes = limit, []

        def __call__(self, x):
            self.sizes.append(x.shape[-1])
            if x.shape[-1] > self.limit:
                raise torch.OutOfMemoryError("fake")
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    fake = Fake(limit=100)
    out = upscale_module.run_model(fake, image(300, 300), 400, 8)
    assert out.size == (600, 600) and fake.sizes[:2] == [300, 154] and set(fake.sizes[2:]) == {81}  # 400→200→100
    with pytest.raises(upscaling.UpscaleOutOfMemory, match="even with 64 px tiles"):
        upscale_module.run_model(Fake(limit=10), image(300, 300), 0, 8)
