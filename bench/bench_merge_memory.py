"""Peak memory of a checkpoint merge: two SD1.5-sized random checkpoints, merged block by block.

    venv/bin/python bench/bench_merge_memory.py [--dtype fp16|fp32] [--whole-dict] [--folder DIR]

Writes two random-weight checkpoints with SD1.5's exact keys and shapes (1.07 G parameters; 2.1 GB
in fp16, 4.3 GB in fp32), then merges them in a fresh subprocess (Weighted sum, GRAD_V block
weights) on the web UI's job queue. A thread in that subprocess polls RssAnon in /proc/self/status
(anonymous memory: pages of the memory-mapped inputs and of the written output are file cache and
do not count) and reports the peak above the baseline taken after importing torch and the engine,
divided by the size of one input. Target: <= 0.3. --whole-dict also measures the A1111 way (load
both files whole, build the merged dict, save it) for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def rss_anon() -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakWatcher:
    def __init__(self, interval=0.005):
        self.interval = interval
        self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())


def sd15_shapes():
    from modules.models.ldm_convert import to_ldm_checkpoint
    from modules.models.loader import build_text_encoder, build_unet, build_vae, family_configs
    configs = family_configs("sd1")
    state = to_ldm_checkpoint("sd1", build_unet(configs["unet"]), build_vae(configs["vae"]),
                              [build_text_encoder(configs["text_encoder"])])
    return [(key, tuple(t.shape)) for key, t in sorted(state.items())]


def write_random(path: str, shapes, dtype, seed: int) -> int:
    """Stream a random checkpoint to disk, one tensor in memory at a time; returns the file size."""
    import torch
    from modules.merge.safetensors_stream import StreamingSafetensorsWriter
    generator = torch.Generator().manual_seed(seed)
    plan = [(key, shape, dtype) for key, shape in shapes]
    with open(path, "wb") as file:
        writer = StreamingSafetensorsWriter(file, plan, {"format": "pt"})
        for key, shape, _ in plan:
            writer.write(key, (torch.randn(shape, generator=generator) * 0.02).to(dtype))
        writer.finish()
    return os.path.getsize(path)


def child(mode: str, a: str, b: str, out: str) -> None:
    """Runs in a fresh process: baseline, merge on the job queue, peak."""
    import torch  # noqa: F401 - part of the baseline
    from modules import shared
    from modules.merge import MergeRequest, merge
    baseline = rss_anon()
    started = time.time()
    with PeakWatcher() as watcher:
        if mode == "stream":
            shared.job_queue.run(lambda: merge(MergeRequest(a, b, block_weights="GRAD_V", output_path=out,
                                                            overwrite=True)), name="model-merge")
        else:
            def whole_dict():
                from safetensors.torch import load_file, save_file
                sa, sb = load_file(a), load_file(b)
                merged = {k: (v.float() * 0.5 + sb[k].float() * 0.5).to(v.dtype) for k, v in sa.items()}
                del sa, sb
                save_file(merged, out)
            shared.job_queue.run(whole_dict, name="model-merge")
    print(json.dumps({"baseline": baseline, "peak": watcher.peak, "seconds": time.time() - started}))


def measure(mode: str, a: str, b: str, out: str) -> dict:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, a, b, out],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    parser.add_argument("--whole-dict", action="store_true", help="also measure loading both models whole")
    parser.add_argument("--folder", default=None, help="where to write the inputs (default: a temporary folder)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from bench_utils import in_own_thread
    folder = args.folder or tempfile.mkdtemp(prefix="bench-merge-")
    os.makedirs(folder, exist_ok=True)
    a, b, out = (os.path.join(folder, name) for name in ("A.safetensors", "B.safetensors", "merged.safetensors"))

    def setup():
        import torch
        dtype = torch.float16 if args.dtype == "fp16" else torch.float32
        shapes = sd15_shapes()
        return write_random(a, shapes, dtype, 0), write_random(b, shapes, dtype, 1), len(shapes)

    started = time.time()
    size, _, keys = in_own_thread(setup)
    print(f"inputs: 2 x {size / 1e9:.2f} GB ({keys} tensors, {args.dtype}) written in {time.time() - started:.0f}s to {folder}")
    modes = ["stream"] + (["whole-dict"] if args.whole_dict else [])
    try:
        for mode in modes:
            result = measure(mode, a, b, out)
            growth = result["peak"] - result["baseline"]
            label = "streaming merge (ours)" if mode == "stream" else "whole-dict merge (A1111 way)"
            print(f"{label}: peak RssAnon {growth / 1e6:.0f} MB above baseline "
                  f"({result['baseline'] / 1e6:.0f} MB), {growth / size:.3f} x one model, {result['seconds']:.1f}s")
    finally:
        if not args.folder:
            for path in (a, b, out):
                if os.path.exists(path):
                    os.remove(path)
            os.rmdir(folder)
    print("target: <= 0.3 x one model (the machine may be shared with other work; times are noisy)")


if __name__ == "__main__":
    main()
