"""Per-step sampling time, our sampling loop vs diffusers' own pipeline with the equivalent scheduler.
Prints numbers; asserts nothing.

    venv/bin/python bench/bench_sampler_steps.py [--size 64] [--repeats 3] [--samplers "Euler,DPM++ 2M Karras"]
                                                 [--step-pair 10,40] [--threads N] [--device cpu|cuda[:N]]
    venv/bin/python bench/bench_sampler_steps.py --full-size [--size 512] [--steps 20] [--repeats 3] [--device ...]

Default (tiny SD1 model, same components on both sides): for each sampler, both sides generate one
image at a low and a high step count (best of --repeats each); the per-step time is
(t_high - t_low) / (high - low), so text encoding, VAE decoding and other per-image costs cancel out.
Ours runs the real job (processing.process_images on the job queue), diffusers a
StableDiffusionPipeline built from the loaded model's modules. Both run on the job queue's worker
thread, so thread settings are the same. The UNet evaluations of each side are counted in an
untimed run and printed: a per-step comparison only means something when both sides evaluate the
UNet equally often between the two step counts. (The default pair 10,40 divides 1000, which keeps
DDIM's timestep lists the same length on both sides; with 30 steps ours visits 31 timesteps.)

--full-size: iterations per second of a random-weight UNet with the SD1.5 architecture (our shipped
config), batch 1 with CFG (2 rows through the UNet), Euler; ours is CFGDenoiser + sd_samplers.run_sampler,
diffusers a StableDiffusionPipeline over the same UNet fed with precomputed prompt embeddings
([1, 77, 768]) and returning latents, so neither side encodes text or decodes images. fp16 on CUDA,
fp32 on CPU (very slow there: shrink --steps and --size).
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import in_own_thread  # noqa: E402

# A1111 sampler name -> (diffusers scheduler class name, constructor arguments over the SD betas)
DIFFUSERS_EQUIVALENTS = {
    "Euler": ("EulerDiscreteScheduler", {"timestep_spacing": "linspace"}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {"timestep_spacing": "leading", "clip_sample": False,
                               "set_alpha_to_one": False}),
    "Heun": ("HeunDiscreteScheduler", {}),
}
SD_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "steps_offset": 1}
PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk", "blurry"
CFG = 7.0
SEED = 1


def make_scheduler(label: str):
    import diffusers

    class_name, extra = DIFFUSERS_EQUIVALENTS[label]
    return getattr(diffusers, class_name).from_config({**SD_BETAS, **extra})


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_calls(module, fn) -> int:
    """How many times `module` runs its forward during fn()."""
    calls = []
    handle = module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


# --- part 1: per-step time on the tiny model --------------------------------------------------------

def per_step(args) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    import webui
    from modules import cmd_args, processing, sd_samplers, shared
    from modules.tiny_models import write_tiny_checkpoint

    torch.set_num_threads(args.threads)
    low, high = args.step_pair
    data_dir = tempfile.mkdtemp(prefix="bench-steps-")
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    os.makedirs(folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    # no console progress bar (the diffusers one is off too); no NaN check: random weights in fp16 may
    # overflow, and the check is a per-image cost that the per-step difference removes anyway
    flags = ["--data-dir", data_dir, "--disable-console-progressbars", "--no-prompt-history", "--disable-nan-check"]
    if args.device:  # otherwise the web UI's own choice: CUDA (fp16) when present
        device = torch.device(args.device)
        flags += ["--use-cpu", "all"] if device.type == "cpu" else ["--device-id", str(device.index or 0)]
    webui.initialize(cmd_args.parse_args(flags))
    model = shared.job_queue.run(shared.model_holder.ensure_for_job)
    device = model.device_config.device
    size = args.size or 64

    def ours_job(label, steps):
        name, schedule_label = sd_samplers.split_legacy_name(label)

        def job():
            p = processing.StableDiffusionProcessingTxt2Img(
                prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps, width=size, height=size,
                seed=SEED, subseed=SEED, sampler_name=name, scheduler=schedule_label, cfg_scale=CFG,
                do_not_save_samples=True, do_not_save_grid=True)
            processing.process_images(p)
            sync(device)
        return lambda: shared.job_queue.run(job)

    def diffusers_job(label, steps):
        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                       tokenizer=model.tokenizers[0], unet=model.unet,
                                       scheduler=make_scheduler(label), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)

        def job():
            pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=CFG,
                 width=size, height=size, generator=torch.Generator(device).manual_seed(SEED))
            sync(device)
        return lambda: shared.job_queue.run(job)

    ours_job(args.samplers[0], high)()  # first job: one-time messages and lazy set-up, before the table
    print(f"tiny SD1, {size}x{size}, batch 1, CFG {CFG}, device {device}, dtype {model.device_config.dtype}, "
          f"{torch.get_num_threads()} threads")
    print(f"per step = (t{high} - t{low}) / {high - low}, t = best of {args.repeats} whole images; "
          f"UNet calls at {low} -> {high} steps in brackets")
    print(f"{'sampler':<18}{'ours ms/step':>14}{'diffusers ms/step':>19}{'ratio':>8}   UNet calls ours | diffusers")
    for label in args.samplers:
        # built on the worker as well: even making a diffusers scheduler runs torch ops (bench_utils)
        runs = shared.job_queue.run(lambda: {
            (side, steps): make(label, steps)
            for side, make in (("ours", ours_job), ("diffusers", diffusers_job)) for steps in (low, high)})
        calls = {key: count_calls(model.unet, fn) for key, fn in runs.items()}  # also the warm-up
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):  # interleaved, so slow drifts of the machine hit both sides
            for key, fn in runs.items():
                start = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - start)
        ours = (best["ours", high] - best["ours", low]) / (high - low)
        theirs = (best["diffusers", high] - best["diffusers", low]) / (high - low)
        note = ""
        if calls["ours", high] - calls["ours", low] != calls["diffusers", high] - calls["diffusers", low]:
            note = "  (different number of UNet calls: the ratio is skewed)"
        ratio = f"{ours / theirs:8.3f}" if theirs > 0 else "     n/a"  # noise can swamp a tiny step
        print(f"{label:<18}{ours * 1000:>14.3f}{theirs * 1000:>19.3f}{ratio}   "
              f"{calls['ours', low]}->{calls['ours', high]} | "
              f"{calls['diffusers', low]}->{calls['diffusers', high]}{note}")
    print("target: ratio <= 1.05")


# --- part 2: it/s of a full-size SD1.5 UNet ---------------------------------------------------------

def full_size(args) -> None:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from modules import prompt_parser, rng, sd_samplers, shared
    from modules.denoiser import CFGDenoiser, Guidance
    from modules.models.loader import family_configs
    from modules.noise_schedule import DiscreteSchedule

    torch.set_num_threads(args.threads)
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    size = args.size or 512
    steps = args.steps
    if device.type == "cpu":
        print(f"warning: full-size UNet on the CPU in float32 is very slow (minutes per image at 512x512); "
              f"running {steps} steps at {size}x{size}")

    torch.manual_seed(0)
    config = family_configs("sd1")["unet"]
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config)  # random init straight on the device
    if dtype == torch.float16:
        unet = unet.half()
    unet = unet.eval().requires_grad_(False)
    parameters = sum(p.numel() for p in unet.parameters())

    # one fixed "encoded prompt" and "encoded negative" instead of a text encoder
    generator = torch.Generator("cpu").manual_seed(SEED)
    embeddings = {False: torch.randn(1, 77, 768, generator=generator).to(device, dtype),
                  True: torch.randn(1, 77, 768, generator=generator).to(device, dtype)}

    class Encoder:  # what prompt_parser calls; returns the fixed embedding for every text
        def get_learned_conditioning(self, texts):
            negative = getattr(texts, "is_negative_prompt", False)
            return embeddings[negative].float().expand(len(texts), -1, -1).clone()

    schedule = DiscreteSchedule.scaled_linear()
    sampler = sd_samplers.find_sampler("Euler")
    cond = prompt_parser.get_multicond_learned_conditioning(Encoder(), [PROMPT], steps)
    uncond = prompt_parser.get_learned_conditioning(
        Encoder(), prompt_parser.SdConditioning([NEGATIVE], is_negative_prompt=True), steps)
    latent_shape = (4, size // 8, size // 8)

    def ours(n):
        sigmas, _ = sd_samplers.compute_sampler_sigmas(sampler, "Automatic", n, schedule, shared.opts)
        sigmas = sigmas.to(device)
        options = sd_samplers.solver_options(sampler, argparse.Namespace(), shared.opts)
        noise = rng.ImageRNG(latent_shape, [SEED], device=device)
        factor, _ = sd_samplers.initial_noise_multiplier(sampler, sigmas, shared.opts)
        x = noise.first().to(device) * factor
        denoiser = CFGDenoiser(unet, schedule, "eps", Guidance(cond=cond, uncond=uncond, cfg_scale=CFG))
        sd_samplers.run_sampler(sampler, denoiser, x, sigmas, options, noise.noise_sampler, [SEED],
                                schedule=schedule, disable=True)

    pipe = StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet,
                                   scheduler=make_scheduler("Euler"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def theirs(n):
        pipe(prompt_embeds=embeddings[False], negative_prompt_embeds=embeddings[True], num_inference_steps=n,
             guidance_scale=CFG, width=size, height=size, output_type="latent",
             generator=torch.Generator(device).manual_seed(SEED))

    def timed(fn):
        sync(device)
        start = time.perf_counter()
        fn(steps)
        sync(device)
        return time.perf_counter() - start

    warm = 1 if device.type == "cpu" else 3  # warm-up: allocator, cuDNN algorithm choice
    ours(warm)
    theirs(warm)
    calls_ours = count_calls(unet, lambda: ours(steps))
    calls_theirs = count_calls(unet, lambda: theirs(steps))
    best_ours = best_theirs = float("inf")
    for _ in range(args.repeats):
        best_ours = min(best_ours, timed(ours))
        best_theirs = min(best_theirs, timed(theirs))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"SD1.5-size UNet ({parameters / 1e6:.1f} M parameters, random weights), {size}x{size}, "
          f"{steps} steps, batch 1 + CFG (2 rows per UNet call), Euler")
    print(f"device {device} ({name}), dtype {str(dtype).removeprefix('torch.')}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}, UNet calls ours {calls_ours} | "
          f"diffusers {calls_theirs}")
    print(f"ours:      {steps / best_ours:8.3f} it/s  ({best_ours:.3f} s)")
    print(f"diffusers: {steps / best_theirs:8.3f} it/s  ({best_theirs:.3f} s)")
    print(f"ratio (ours time / diffusers time): {best_ours / best_theirs:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None,
                        help="image width and height (default 64; 512 with --full-size)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the best counts)")
    parser.add_argument("--samplers", default=",".join(DIFFUSERS_EQUIVALENTS),
                        help="comma-separated, from: " + ", ".join(DIFFUSERS_EQUIVALENTS))
    parser.add_argument("--step-pair", default="10,40",
                        help="the two step counts of the per-step measurement (default 10,40)")
    parser.add_argument("--full-size", action="store_true",
                        help="instead: it/s of an SD1.5-size UNet at 512x512 (fp16 on CUDA)")
    parser.add_argument("--steps", type=int, default=20, help="steps of the --full-size run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch CPU threads (default: all cores; 1 is steadier on a busy machine)")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when present)")
    args = parser.parse_args()

    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in args.samplers if s not in DIFFUSERS_EQUIVALENTS]
    if unknown:
        parser.error(f"no diffusers equivalent set up for {', '.join(unknown)}; "
                     f"choose from {', '.join(DIFFUSERS_EQUIVALENTS)}")
    try:
        args.step_pair = sorted(int(n) for n in args.step_pair.split(","))
    except ValueError:
        parser.error("--step-pair takes two integers, e.g. 10,40")
    if len(args.step_pair) != 2 or args.step_pair[0] < 1 or args.step_pair[0] == args.step_pair[1]:
        parser.error("--step-pair takes two different positive step counts, e.g. 10,40")
    if args.repeats < 1 or args.steps < 1 or args.threads < 1:
        parser.error("--repeats, --steps and --threads must be at least 1")

    if args.full_size:
        full_size(args)
    else:
        per_step(args)


if __name__ == "__main__":
    main()
