"""The repeated-prompt case (issue 14): the same prompt generated again, so that our conditioning
cache (setting persistent_cond_cache) skips the text encoders, vs diffusers' StableDiffusionPipeline,
which encodes the prompt on every call. Tiny SD1 weights shared by both sides (diffusers gets its own
copies of the UNet and VAE modules, as its users have them); runs interleaved
(ours, diffusers, ours, ...) in one process, all torch work on the job-queue thread. Also prints our
time with the cache off, to show what the cache is worth. Prints numbers; asserts nothing.

    venv/bin/python bench/bench_repeated_prompt.py [--steps 20] [--size 64] [--rounds 7] [--threads N]
"""
import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import euler_scheduler, interleaved_times, start_tiny_sd1  # noqa: E402

# one 75-token chunk on both sides (a longer prompt would give our UNet twice the context diffusers sees)
PROMPT = ", ".join(["a lighthouse on a cliff at dusk", "dramatic clouds", "oil painting", "highly detailed",
                    "warm light", "crashing waves", "seagulls", "by a famous painter"] * 2)
NEGATIVE = "blurry, low quality, watermark, text, deformed"


def main():
    import faulthandler
    if os.environ.get("BENCH_DUMP"):  # where a run seems stuck
        faulthandler.dump_traceback_later(int(os.environ["BENCH_DUMP"]), exit=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="1 gives steadier numbers on a busy machine")
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from modules import processing, shared

    torch.set_num_threads(args.threads)
    _, model = start_tiny_sd1("bench-")

    def ours(cached: bool):
        shared.opts.set("persistent_cond_cache", cached)  # a bench may change the setting between jobs
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, negative_prompt=NEGATIVE, steps=args.steps, width=args.size, height=args.size,
            seed=1, sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True)
        shared.job_queue.run(lambda: processing.process_images(p))

    def plain_copy(module):  # diffusers' own module with the same weights: our loader's attention call
        copy = type(module).from_config(module.config)  # (modules.models.attention_call) is ours, not theirs
        copy.load_state_dict(module.state_dict())
        return copy.eval()

    def make_pipeline():  # on the worker: even a diffusers scheduler's set-up runs torch ops (bench_utils)
        pipe = StableDiffusionPipeline(vae=plain_copy(model.vae), text_encoder=model.text_encoders[0],
                                       tokenizer=model.tokenizers[0], unet=plain_copy(model.unet),
                                       scheduler=euler_scheduler(),
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = shared.job_queue.run(make_pipeline)

    def diffusers_call():
        shared.job_queue.run(lambda: pipe(
            prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps, guidance_scale=7.0,
            width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1)))

    sides = {"ours (cached)": lambda: ours(True), "diffusers": diffusers_call, "ours (cache off)": lambda: ours(False)}
    # the warm-up call of the cached side fills the cache with this prompt
    times = interleaved_times(sides, args.rounds, show_each=True)
    shared.opts.set("persistent_cond_cache", True)

    print(f"tiny SD1, {args.size}x{args.size}, {args.steps} steps, Euler, CFG 7, batch 1, a 1-chunk prompt repeated; "
          f"{args.rounds} interleaved rounds, {torch.get_num_threads()} threads (machine shared with other work)")
    for name, values in times.items():
        print(f"{name:17s} median {statistics.median(values):.4f} s  best {min(values):.4f} s")
    cached, plain = statistics.median(times["ours (cached)"]), statistics.median(times["diffusers"])
    print(f"ratio ours (cached) / diffusers: median {cached / plain:.3f}, "
          f"best {min(times['ours (cached)']) / min(times['diffusers']):.3f} (target <= 0.95)")


if __name__ == "__main__":
    main()
