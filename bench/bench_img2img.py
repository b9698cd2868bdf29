"""Seconds per img2img image, ours vs diffusers' StableDiffusionImg2ImgPipeline on the same tiny
SD1 components (64x64, 20 steps, strength 0.75, Euler). A and B run interleaved in one process, all
torch work on the job worker (bench_utils). Prints numbers; asserts nothing.

    venv/bin/python bench/bench_img2img.py [--steps 20] [--size 64] [--strength 0.75] [--rounds 7]

Step counts differ by design: A1111's rule (generation.md §7.3) runs t_enc + 1 = ⌊0.75·20⌋ + 1 = 16
sampler steps, diffusers runs ⌊20·0.75⌋ = 15; the per-step ratio compares equal work.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import in_own_thread  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--strength", type=float, default=0.75)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image

    import webui
    from modules import cmd_args, processing, shared
    from modules.tiny_models import write_tiny_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    data_dir = tempfile.mkdtemp(prefix="bench-img2img-")
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    os.makedirs(folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    webui.initialize(cmd_args.parse_args(["--data-dir", data_dir]))
    model = shared.job_queue.run(shared.model_holder.ensure_for_job)
    pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)

    def ours():
        p = processing.StableDiffusionProcessingImg2Img(
            prompt="a lighthouse", negative_prompt="", steps=args.steps, width=args.size, height=args.size,
            seed=1, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True,
            init_images=[image], denoising_strength=args.strength)
        shared.job_queue.run(lambda: processing.process_images(p))

    def make_pipeline():
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="linspace", num_train_timesteps=1000, steps_offset=1)
        pipe = StableDiffusionImg2ImgPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                              tokenizer=model.tokenizers[0], unet=model.unet, scheduler=scheduler,
                                              safety_checker=None, feature_extractor=None,
                                              requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def plain():
        shared.job_queue.run(lambda: pipe(
            prompt="a lighthouse", negative_prompt="", image=image, strength=args.strength,
            num_inference_steps=args.steps, guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(1)))

    ours()
    plain()  # warm-up
    ours_times, plain_times = [], []
    for _ in range(args.rounds):  # interleaved: both see the same machine load
        ours_times.append(timed(ours))
        plain_times.append(timed(plain))
    ours_s, plain_s = min(ours_times), min(plain_times)
    ours_steps = int(min(args.strength, 0.999) * args.steps) + 1
    plain_steps = int(args.steps * args.strength)
    print(f"tiny SD1 img2img, {args.size}x{args.size}, {args.steps} steps, strength {args.strength}, Euler, "
          f"batch 1, best of {args.rounds} interleaved rounds, {torch.get_num_threads()} threads")
    print(f"ours:      {ours_s:.4f} s/image ({ours_steps} sampler steps)")
    print(f"diffusers: {plain_s:.4f} s/image ({plain_steps} sampler steps)")
    print(f"ratio:     {ours_s / plain_s:.3f} (target <= 1.05)")
    print(f"per-step ratio: {(ours_s / ours_steps) / (plain_s / plain_steps):.3f}")


if __name__ == "__main__":
    main()
