"""Per-step time with one ControlNet unit: our txt2img vs diffusers' StableDiffusionControlNetPipeline
on the same tiny SD1 components and the same ControlNet weights. Prints numbers; asserts nothing.

    venv/bin/python bench/bench_controlnet.py [--steps 20] [--size 64] [--repeats 5]
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import euler_scheduler, interleaved_times, start_tiny_sd1  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    from modules import processing, shared
    from modules.controlnet import job, model_files, units
    from tests.controlnet_models import write_tiny_controlnets

    torch.set_num_threads(os.cpu_count() or 1)
    _, model = start_tiny_sd1("bench-cn-", lambda data: write_tiny_controlnets(Path(data) / "models" / "ControlNet"))
    control = np.zeros((args.size, args.size, 3), dtype=np.uint8)
    control[args.size // 4: 3 * args.size // 4, args.size // 4: 3 * args.size // 4] = 255
    control_image = Image.fromarray(control)
    net = shared.job_queue.run(lambda: job.load_model(model_files.find_model("tiny_sd15_canny"), model))

    def ours():
        unit = units.ControlNetUnit(enabled=True, module="none", model="tiny_sd15_canny", image=control_image,
                                    resize_mode="Just Resize", save_detected_map=False)
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a lighthouse", negative_prompt="", steps=args.steps, width=args.size, height=args.size,
            seed=1, sampler_name="Euler", do_not_save_samples=True, controlnet_units=[unit])
        shared.job_queue.run(lambda: processing.process_images(p))

    def make_pipeline():
        pipe = StableDiffusionControlNetPipeline(
            vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0], unet=model.unet,
            controlnet=net, scheduler=euler_scheduler(), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def plain():
        shared.job_queue.run(lambda: pipe(
            prompt="a lighthouse", negative_prompt="", image=control_image, num_inference_steps=args.steps,
            guidance_scale=7.0, width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1)))

    rounds = 2 * args.repeats  # as many timed calls a side as the two blocks of `repeats` it had before
    times = interleaved_times({"ours": ours, "diffusers": plain}, rounds)
    ours_step, plain_step = min(times["ours"]) / args.steps, min(times["diffusers"]) / args.steps
    print(f"tiny SD1 + tiny ControlNet, {args.size}x{args.size}, {args.steps} steps, Euler, one unit, "
          f"best of {rounds} interleaved rounds, {torch.get_num_threads()} threads")
    print(f"ours:      {ours_step * 1000:.2f} ms/step")
    print(f"diffusers: {plain_step * 1000:.2f} ms/step")
    print(f"ratio:     {ours_step / plain_step:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
