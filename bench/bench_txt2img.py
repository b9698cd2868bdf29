"""Seconds per image, our txt2img vs a plain diffusers pipeline on the same tiny SD1 components,
and the time from launching the server to the UI answering. Prints numbers; asserts nothing.

    venv/bin/python bench/bench_txt2img.py [--steps 20] [--size 64] [--repeats 5]
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import euler_scheduler, interleaved_times, start_tiny_sd1  # noqa: E402


def launch_time(data_dir) -> float:
    import requests
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "webui.py"), "--data-dir", data_dir,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except requests.ConnectionError:
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from modules import processing, shared

    torch.set_num_threads(os.cpu_count() or 1)
    data_dir, model = start_tiny_sd1("bench-")

    def ours():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a lighthouse", negative_prompt="", steps=args.steps, width=args.size,
            height=args.size, seed=1, sampler_name="Euler", do_not_save_samples=True)
        shared.job_queue.run(lambda: processing.process_images(p))

    def make_pipeline():  # on the worker: even a diffusers scheduler's set-up runs torch ops (bench_utils)
        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                       tokenizer=model.tokenizers[0], unet=model.unet, scheduler=euler_scheduler(),
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def plain():  # on the job queue's worker too: see bench_utils.in_own_thread
        shared.job_queue.run(lambda: pipe(
            prompt="a lighthouse", negative_prompt="", num_inference_steps=args.steps, guidance_scale=7.0,
            width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1)))

    times = interleaved_times({"ours": ours, "diffusers": plain}, args.repeats)
    ours_s, plain_s = min(times["ours"]), min(times["diffusers"])
    print(f"tiny SD1, {args.size}x{args.size}, {args.steps} steps, Euler, batch 1, "
          f"best of {args.repeats} interleaved rounds, {torch.get_num_threads()} threads")
    print(f"ours:      {ours_s:.4f} s/image")
    print(f"diffusers: {plain_s:.4f} s/image")
    print(f"ratio:     {ours_s / plain_s:.3f} (target <= 1.10)")
    print(f"launch to UI answering: {launch_time(data_dir):.2f} s")


if __name__ == "__main__":
    main()
