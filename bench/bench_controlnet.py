"""Per-step time with one ControlNet unit: our txt2img vs diffusers' StableDiffusionControlNetPipeline
on the same tiny SD1 components and the same ControlNet weights. Prints numbers; asserts nothing.

    venv/bin/python bench/bench_controlnet.py [--steps 20] [--size 64] [--repeats 5]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import in_own_thread  # noqa: E402


def best_of(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionControlNetPipeline
    from PIL import Image

    import webui
    from modules import cmd_args, processing, shared
    from modules.controlnet import job, model_files, units
    from modules.tiny_models import write_tiny_checkpoint
    from tests.controlnet_models import write_tiny_controlnets

    torch.set_num_threads(os.cpu_count() or 1)
    data_dir = tempfile.mkdtemp(prefix="bench-cn-")
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    os.makedirs(folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    in_own_thread(lambda: write_tiny_controlnets(Path(data_dir) / "models" / "ControlNet"))
    webui.initialize(cmd_args.parse_args(["--data-dir", data_dir]))
    model = shared.job_queue.run(shared.model_holder.ensure_for_job)
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
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="linspace", num_train_timesteps=1000, steps_offset=1)
        pipe = StableDiffusionControlNetPipeline(
            vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0], unet=model.unet,
            controlnet=net, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def plain():
        shared.job_queue.run(lambda: pipe(
            prompt="a lighthouse", negative_prompt="", image=control_image, num_inference_steps=args.steps,
            guidance_scale=7.0, width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1)))

    ours_s, plain_s = [], []
    for _ in range(2):  # interleaved: a shared machine's load hits both sides alike
        ours_s.append(best_of(ours, args.repeats))
        plain_s.append(best_of(plain, args.repeats))
    ours_step, plain_step = min(ours_s) / args.steps, min(plain_s) / args.steps
    print(f"tiny SD1 + tiny ControlNet, {args.size}x{args.size}, {args.steps} steps, Euler, one unit, "
          f"best of {args.repeats} x2, {torch.get_num_threads()} threads")
    print(f"ours:      {ours_step * 1000:.2f} ms/step")
    print(f"diffusers: {plain_step * 1000:.2f} ms/step")
    print(f"ratio:     {ours_step / plain_step:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
