"""Job overhead of the script machinery: a txt2img job on the tiny SD1 model with 20 no-op always-on
scripts (each overriding every per-job, per-batch and per-image hook) vs the same job with no
scripts; optionally also with one no-op cfg_denoiser callback (the per-step callback path).
Runs A and B interleaved in one process; prints seconds per image and the ratio. Asserts nothing.

    venv/bin/python bench/bench_scripts.py [--steps 20] [--size 64] [--repeats 7] [--with-cfg-callback]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_utils import in_own_thread  # noqa: E402

HOOKS = ("setup", "before_process", "process", "before_process_batch", "after_extra_networks_activate",
         "process_batch", "process_before_every_sampling", "before_hr", "postprocess_batch",
         "postprocess_batch_list", "postprocess_image", "postprocess")


def write_noop_extension(data_dir: str, count: int, cfg_callback: bool) -> None:
    folder = os.path.join(data_dir, "extensions", "noop-scripts", "scripts")
    os.makedirs(folder)
    lines = ["import gradio as gr", "from modules import scripts, script_callbacks", ""]
    for i in range(count):
        lines += [f"class Noop{i}(scripts.Script):",
                  f"    def title(self): return 'noop {i}'",
                  "    def show(self, is_img2img): return scripts.AlwaysVisible",
                  "    def ui(self, is_img2img): return [gr.Checkbox(value=False), gr.Slider(0, 1, value=0.5)]"]
        lines += [f"    def {hook}(self, p, *args, **kwargs): pass" for hook in HOOKS]
        lines.append("")
    if cfg_callback:
        lines.append("script_callbacks.on_cfg_denoiser(lambda params: None)")
    with open(os.path.join(folder, "noop.py"), "w") as file:
        file.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scripts", type=int, default=20)
    parser.add_argument("--with-cfg-callback", action="store_true")
    args = parser.parse_args()

    import torch

    import webui
    from modules import cmd_args, processing, scripts, shared
    from modules.extension_loading import startup
    from modules.tiny_models import write_tiny_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    data_dir = tempfile.mkdtemp(prefix="bench-scripts-")
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    os.makedirs(folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    write_noop_extension(data_dir, args.scripts, args.with_cfg_callback)
    webui.initialize(cmd_args.parse_args(["--data-dir", data_dir]))
    startup.setup_scripts_without_ui()
    runner = scripts.scripts_txt2img
    noop = [s for s in runner.alwayson_scripts if s.name.startswith("noop ")]
    assert len(noop) == args.scripts, [s.name for s in runner.alwayson_scripts]
    shared.job_queue.run(shared.model_holder.ensure_for_job)

    # time spent inside the script machinery itself (hook dispatch), measured directly: on a busy
    # machine the whole-job times are noisy, this part is not
    inside = {"seconds": 0.0}
    original_call = runner._call

    def timed_call(method, p, *pre, **kwargs):
        start = time.perf_counter()
        try:
            return original_call(method, p, *pre, **kwargs)
        finally:
            inside["seconds"] += time.perf_counter() - start
    runner._call = timed_call

    def job(with_scripts: bool) -> float:
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="a lighthouse", negative_prompt="", steps=args.steps, width=args.size, height=args.size,
            seed=1, sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
        if with_scripts:
            p.scripts, p.script_args = runner, runner.default_args()
        start = time.perf_counter()
        shared.job_queue.run(lambda: scripts.process_with_scripts(p))
        return time.perf_counter() - start

    job(False), job(True)  # warm-up
    inside["seconds"] = 0.0
    plain, with_scripts = [], []
    for _ in range(args.repeats):
        plain.append(job(False))
        with_scripts.append(job(True))
    a, b = statistics.median(plain), statistics.median(with_scripts)
    what = f"{args.scripts} no-op always-on scripts" + (" + 1 cfg_denoiser callback" if args.with_cfg_callback else "")
    print(f"tiny SD1, {args.size}x{args.size}, {args.steps} steps, Euler, {args.repeats} interleaved repeats")
    print(f"no scripts:        median {a:.4f} s/image (min {min(plain):.4f})")
    print(f"{what}: median {b:.4f} s/image (min {min(with_scripts):.4f})")
    print(f"ratio (scripts / none): median {b / a:.4f}, min {min(with_scripts) / min(plain):.4f}")
    per_image = inside["seconds"] / args.repeats
    print(f"inside the hook dispatch: {per_image * 1000:.3f} ms per image = {per_image / min(plain) * 100:.3f}% "
          f"of the fastest plain job")


if __name__ == "__main__":
    main()
