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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import euler_scheduler, interleaved_times, start_tiny_sd1  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--strength", type=float, default=0.75)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    from modules import processing, shared

    torch.set_num_threads(os.cpu_count() or 1)
    _, model = start_tiny_sd1("bench-img2img-")
    pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)

    def ours():
        p = processing.StableDiffusionProcessingImg2Img(
            prompt="a lighthouse", negative_prompt="", steps=args.steps, width=args.size, height=args.size,
            seed=1, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True,
            init_images=[image], denoising_strength=args.strength)
        shared.job_queue.run(lambda: processing.process_images(p))

    def make_pipeline():
        pipe = StableDiffusionImg2ImgPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                              tokenizer=model.tokenizers[0], unet=model.unet,
                                              scheduler=euler_scheduler(),
                                              safety_checker=None, feature_extractor=None,
                                              requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def plain():
        shared.job_queue.run(lambda: pipe(
            prompt="a lighthouse", negative_prompt="", image=image, strength=args.strength,
            num_inference_steps=args.steps, guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(1)))

    times = interleaved_times({"ours": ours, "diffusers": plain}, args.rounds)
    ours_s, plain_s = min(times["ours"]), min(times["diffusers"])
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
