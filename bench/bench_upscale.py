"""Seconds for a 4x model upscale of a 256x256 image: our upscaler path (registry, model cache,
tiling, exact resize) vs calling spandrel directly on the same weight file, interleaved in one run.

    venv/bin/python bench/bench_upscale.py [--arch esrgan|compact] [--features 32] [--blocks 4]
                                           [--size 256] [--repeats 3] [--device cpu|cuda]

`--full-size` uses the real ESRGAN 4x shape (64 features, 23 blocks), meant for a GPU machine.
All torch work runs on the job-queue thread (bench/README.md)."""
import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_utils import in_own_thread  # noqa: E402
from modules import devices, shared, upscaling  # noqa: E402
from modules.upscaling import tiny_upscalers  # noqa: E402


def spandrel_direct(path, device, half):
    import spandrel
    descriptor = spandrel.ModelLoader(device).load_from_file(path)
    descriptor.model.eval()
    if half:
        descriptor.model.half()
    dtype = torch.float16 if half else torch.float32

    def run(image):
        x = np.asarray(image, np.float32)[:, :, ::-1] / 255.0
        x = torch.from_numpy(x.copy()).permute(2, 0, 1)[None].to(device, dtype)
        with torch.inference_mode():
            y = descriptor(x)
        y = y[0].float().permute(1, 2, 0).cpu().numpy()[:, :, ::-1]
        return (y * 255).round().astype(np.uint8)
    return run


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="esrgan", choices=["esrgan", "compact"])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    half = device.type == "cuda"
    if args.full_size:
        args.features, args.blocks = 64, 23 if args.arch == "esrgan" else 32

    folder = tempfile.mkdtemp(prefix="bench-upscale-")
    sizes = {"features": args.features, "blocks": args.blocks} if args.arch == "esrgan" else \
        {"features": args.features, "convs": args.blocks}
    path = in_own_thread(lambda: tiny_upscalers.write(args.arch, os.path.join(folder, "ESRGAN", "bench.pth"),
                                                      scale=4, **sizes))
    shared.paths = dataclasses.replace(shared.paths, models=folder)
    shared.device_config = dataclasses.replace(devices.cpu_config(), device=device,
                                               dtype=torch.float16 if half else torch.float32)
    from PIL import Image
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    direct = shared.job_queue.run(lambda: spandrel_direct(path, device, half))

    def ours(tile):
        with shared.opts.override({"ESRGAN_tile": tile, "ESRGAN_tile_overlap": 8}):
            return upscaling.upscale(image, 4, "bench")

    def one(fn):
        return shared.job_queue.run(lambda: timed(fn, device))

    for fn in (lambda: direct(image), lambda: ours(0), lambda: ours(192)):  # warm-up: load, allocate
        one(fn)
    times = {"spandrel": [], "ours (no tiles)": [], "ours (tile 192/8)": []}
    for _ in range(args.repeats):  # interleaved, so machine load hits both alike
        times["spandrel"].append(one(lambda: direct(image)))
        times["ours (no tiles)"].append(one(lambda: ours(0)))
        times["ours (tile 192/8)"].append(one(lambda: ours(192)))
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.arch} {args.features}f/{args.blocks}b 4x of {args.size}x{args.size} on {device} "
          f"({'fp16' if half else 'fp32'}), best of {args.repeats}, torch threads {torch.get_num_threads()}")
    for name, seconds in best.items():
        print(f"  {name:18s} {seconds:8.3f} s   ratio {seconds / best['spandrel']:.3f}")


if __name__ == "__main__":
    main()
