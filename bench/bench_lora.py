"""LoRA cost, two figures (issue 11). Prints numbers; asserts nothing.

1. Apply + restore: a rank-32 kohya LoRA (every Linear / 1x1 conv of the UNet's transformer blocks
   and of the text encoder's attention and MLP, like kohya's default `networks.lora`) on a
   random-weight SD1.5-sized UNet + CLIP-L text encoder, float32 on the CPU.
   ours   = `networks.load_networks([name])` (read the file, map keys, patch) + `restore_all()`,
            with the file cache emptied first ("cold") and with the file cached ("cached");
   theirs = diffusers `load_lora_weights` + `fuse_lora` + `unfuse_lora` + `unload_lora_weights`
            on the same file and the same modules (the unload is what gives the model back).
   A and B alternate round by round in one process; best and median per side, and their ratio.
2. Per-image overhead: a txt2img job on the tiny SD1 model with `<lora:tiny:0.7>` vs the same job
   without it, interleaved (median and min ratio).

    venv/bin/python bench/bench_lora.py [--rounds 5] [--rank 32] [--steps 20] [--size 64] [--repeats 9]
                                        [--threads 1] [--skip-full] [--skip-tiny]
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

TE_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def lora_layers(unet, text_encoder):
    """[(kohya module name, layer)] a kohya default LoRA trains."""
    import torch
    layers = []
    for path, module in unet.named_modules():
        if ".attentions." not in path:
            continue
        if isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1)):
            layers.append(("lora_unet_" + path.replace(".", "_"), module))
    for path, module in text_encoder.named_modules():
        if isinstance(module, torch.nn.Linear) and path.endswith(TE_LAYERS):
            # kohya names keep `text_model.`, which transformers 5 no longer has in module paths
            kohya_path = path if path.startswith("text_model.") else "text_model." + path
            layers.append(("lora_te_" + kohya_path.replace(".", "_"), module))
    return layers


def write_random_lora(path, unet, text_encoder, rank, seed=0):
    """A kohya-format file (down/up/alpha per layer, float16 like real files) for these modules."""
    import torch
    from safetensors.torch import save_file
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in lora_layers(unet, text_encoder):
        out_features, in_features = module.weight.shape[:2]
        extra = (1, 1) if module.weight.dim() == 4 else ()
        down = torch.randn(rank, in_features, *extra, generator=generator) / in_features ** 0.5
        up = torch.randn(out_features, rank, *extra, generator=generator) * 0.01
        tensors[f"{name}.lora_down.weight"] = down.half().contiguous()
        tensors[f"{name}.lora_up.weight"] = up.half().contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank // 2)).half()
    save_file(tensors, path, metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                       "ss_base_model_version": "sd_v1"})
    return len(tensors) // 3


def full_size_part(args, lora_folder):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from modules import shared
    from modules.models.loader import family_configs, text_encoder_class, text_encoder_config
    from modules.networks import lora

    def build():
        torch.manual_seed(0)
        configs = family_configs("sd1")
        unet = UNet2DConditionModel.from_config(configs["unet"]).eval().requires_grad_(False)
        te_config = configs["text_encoder"]
        text_encoder = text_encoder_class(te_config)(text_encoder_config(te_config)).eval().requires_grad_(False)
        return unet, text_encoder

    unet, text_encoder = shared.job_queue.run(build)
    path = os.path.join(lora_folder, "sd15-rank.safetensors")
    layers = shared.job_queue.run(lambda: write_random_lora(path, unet, text_encoder, args.rank))
    lora.list_available_networks()
    size_mb = os.path.getsize(path) / 2 ** 20
    parameters = sum(p.numel() for p in unet.parameters()) + sum(p.numel() for p in text_encoder.parameters())

    class Model:  # what the networks code reads of a loaded model
        family = "sd1"
        text_encoders = [text_encoder]
    model = Model()
    model.unet = unet

    pipe = StableDiffusionPipeline(vae=None, text_encoder=text_encoder, tokenizer=None, unet=unet, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    layer_ids = {id(m) for _, m in lora_layers(unet, text_encoder)}

    def ours(cached):
        if not cached:
            lora.clear_cache()  # the memory cache and the last set used: start from the file
        start = time.perf_counter()
        report = lora.load_networks(["sd15-rank"], [1.0], [1.0], [None], model=model)
        applied = time.perf_counter()
        lora.patcher.restore_all()
        lora.loaded_networks.clear()  # what deactivate leaves: nothing active
        end = time.perf_counter()
        assert not report.not_found and not report.unmatched and not report.errors, report
        return applied - start, end - applied

    def theirs():
        start = time.perf_counter()
        pipe.load_lora_weights(path, adapter_name="bench")
        loaded = time.perf_counter()
        pipe.fuse_lora(lora_scale=1.0)
        fused = time.perf_counter()
        pipe.unfuse_lora()
        unfused = time.perf_counter()
        pipe.unload_lora_weights()
        end = time.perf_counter()
        return loaded - start, fused - loaded, unfused - fused, end - unfused

    def check_modules():
        # diffusers' unload puts the original Linear objects back; our layer table must still point at them
        now = {id(m) for _, m in lora_layers(unet, text_encoder)}
        assert now == layer_ids, "diffusers replaced modules: the comparison would patch stale layers"

    shared.job_queue.run(lambda: ours(False))  # warm-up (also hashes the file once, as the app does)
    shared.job_queue.run(theirs)
    shared.job_queue.run(check_modules)
    cold, cached, diff = [], [], []
    for _ in range(args.rounds):
        cold.append(shared.job_queue.run(lambda: ours(False)))
        diff.append(shared.job_queue.run(theirs))
        cached.append(shared.job_queue.run(lambda: ours(True)))
    shared.job_queue.run(check_modules)

    def exactness():
        # each side against the weights right before it (diffusers' unfuse leaves rounding residue)
        def snapshot():
            return {k: v.detach().clone() for k, v in unet.state_dict().items() if "attentions" in k}
        before = snapshot()
        ours(False)
        ours_equal = all(torch.equal(unet.state_dict()[k], v) for k, v in before.items())
        before = snapshot()
        theirs()
        worst = max((unet.state_dict()[k] - v).abs().max().item() for k, v in before.items())
        return ours_equal, worst
    ours_equal, diffusers_worst = shared.job_queue.run(exactness)

    def show(label, rows, names):
        totals = [sum(r) for r in rows]
        parts = " + ".join(f"{n} {statistics.median([r[i] for r in rows]):.3f}" for i, n in enumerate(names))
        print(f"  {label:<26} best {min(totals):7.3f} s  median {statistics.median(totals):7.3f} s   ({parts})")
        return min(totals), statistics.median(totals)

    print(f"1. apply + restore, rank-{args.rank} LoRA ({layers} layers, {size_mb:.0f} MB fp16) on a random SD1.5-sized "
          f"UNet + CLIP-L ({parameters / 1e6:.0f} M parameters, float32, CPU, {torch.get_num_threads()} threads), "
          f"{args.rounds} interleaved rounds")
    cold_best, cold_median = show("ours, file read each time", cold, ["load+patch", "restore"])
    cached_best, cached_median = show("ours, file cached", cached, ["patch", "restore"])
    diff_best, diff_median = show("diffusers", diff, ["load_lora_weights", "fuse", "unfuse", "unload"])
    print(f"  ratio ours/diffusers: file read each time best {cold_best / diff_best:.3f}, median "
          f"{cold_median / diff_median:.3f}; file cached best {cached_best / diff_best:.3f}, median "
          f"{cached_median / diff_median:.3f}   (target <= 1.0)")
    print(f"  weights after restore equal to before: ours {'bit-identical' if ours_equal else 'NOT identical'}; "
          f"diffusers max abs difference after unfuse+unload {diffusers_worst:.3g}")


def tiny_part(args, lora_folder):
    import torch  # noqa: F401

    from modules import processing, shared
    from modules.networks import lora

    def write():
        model = shared.model_holder.ensure_for_job()
        return write_random_lora(os.path.join(lora_folder, "tiny.safetensors"), model.unet, model.text_encoders[0], 4)
    layers = shared.job_queue.run(write)
    lora.list_available_networks()

    def job(prompt):
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=prompt, negative_prompt="", steps=args.steps, width=args.size, height=args.size, seed=1,
            sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
        start = time.perf_counter()
        processed = shared.job_queue.run(lambda: processing.process_images(p))
        elapsed = time.perf_counter() - start
        assert "Lora not found" not in (processed.comments or ""), processed.comments
        return elapsed

    # time inside the LoRA code itself (activate + restore), measured directly: on a busy machine the
    # whole-job times are noisy, this part is not
    inside = {"seconds": 0.0}

    def timed(fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                inside["seconds"] += time.perf_counter() - start
        return wrapper
    lora.load_networks, lora.restore_all = timed(lora.load_networks), timed(lora.restore_all)

    plain_prompt, lora_prompt = "a lighthouse", "a lighthouse <lora:tiny:0.7>"
    job(plain_prompt), job(lora_prompt)  # warm-up: file read, hash, cond cache
    inside_plain = inside_lora = 0.0
    plain, with_lora = [], []
    for _ in range(args.repeats):
        inside["seconds"] = 0.0
        plain.append(job(plain_prompt))
        inside_plain += inside["seconds"]
        inside["seconds"] = 0.0
        with_lora.append(job(lora_prompt))
        inside_lora += inside["seconds"]
    a, b = statistics.median(plain), statistics.median(with_lora)
    print(f"2. per-image overhead, tiny SD1 ({layers} LoRA layers, rank 4), {args.size}x{args.size}, {args.steps} steps, "
          f"Euler, {args.repeats} interleaved repeats")
    print(f"  no LoRA:           median {a:.4f} s/image (min {min(plain):.4f})")
    print(f"  <lora:tiny:0.7>:   median {b:.4f} s/image (min {min(with_lora):.4f})")
    print(f"  overhead: median {(b / a - 1) * 100:+.2f}%, min {(min(with_lora) / min(plain) - 1) * 100:+.2f}%   "
          f"(target <= 3%)")
    per_image = (inside_lora - inside_plain) / args.repeats
    print(f"  inside the LoRA code (activate + restore): {per_image * 1000:.2f} ms per image more than without = "
          f"{per_image / min(plain) * 100:.2f}% of the fastest plain job")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 gives steadier numbers on a busy 2-core machine)")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()

    import torch

    import webui
    from modules import cmd_args
    from modules.tiny_models import write_tiny_checkpoint

    torch.set_num_threads(args.threads)
    data_dir = tempfile.mkdtemp(prefix="bench-lora-")
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    lora_folder = os.path.join(data_dir, "models", "Lora")
    os.makedirs(folder)
    os.makedirs(lora_folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    webui.initialize(cmd_args.parse_args(["--data-dir", data_dir]))
    print("machine: shared with other work; A and B alternate in one process")
    if not args.skip_tiny:
        tiny_part(args, lora_folder)
    if not args.skip_full:
        full_size_part(args, lora_folder)


if __name__ == "__main__":
    main()
