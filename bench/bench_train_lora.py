"""Seconds per LoRA training step on the tiny SD1 model: our trainer (POST /train/lora's code path,
on the job queue) vs a plain diffusers + peft loop on the same data, interleaved in one process.
Prints numbers; asserts nothing.

    venv/bin/python bench/bench_train_lora.py [--size 64] [--steps 30] [--rounds 3] [--batch 2]

Both sides train the UNet only (rank 4) with AdamW and a frozen text encoder whose outputs are
computed once (ours caches them the same way); both draw t and ε on the CPU.
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


def make_data(root, size, count):
    import numpy as np
    from PIL import Image
    folder = os.path.join(root, "dataset", "1_fox")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(os.path.join(folder, f"{i}.png"))
        with open(os.path.join(folder, f"{i}.txt"), "w") as file:
            file.write("a photo of a red fox")
    return os.path.dirname(folder)


def ours(shared, data, size, steps, batch):
    from modules.training import lora, progress
    stamps = []
    original = progress.report_step

    def timed(*args, **kwargs):
        stamps.append(time.perf_counter())
        return original(*args, **kwargs)
    progress.report_step = timed
    try:
        args = lora.LoraTrainArgs(train_data_dir=data, output_name="bench", network_dim=4, network_alpha=4,
                                  max_train_steps=steps, resolution=str(size), learning_rate=1e-4,
                                  network_train_unet_only=True, train_batch_size=batch, seed=0, save_state=False,
                                  max_grad_norm=0)
        shared.job_queue.run(lambda: lora.train_lora(args), name="train_lora")
    finally:
        progress.report_step = original
    deltas = [b - a for a, b in zip(stamps, stamps[1:])][5:]  # after warm-up
    return statistics.median(deltas)


def plain(shared, data, size, steps, batch):
    """The loop a diffusers user writes: add_adapter, DDPMScheduler.add_noise, MSE, AdamW."""
    def run():
        import numpy as np
        import torch
        from diffusers import DDPMScheduler
        from peft import LoraConfig
        from PIL import Image

        from modules.training import lora_network
        model = shared.model_holder.ensure_for_job()
        unet, vae, te, tok = model.unet, model.vae, model.text_encoders[0], model.tokenizers[0]
        folder = os.path.join(data, "1_fox")
        pixels = [torch.from_numpy(np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"), dtype=np.float32)
                                   / 127.5 - 1).permute(2, 0, 1) for f in sorted(os.listdir(folder)) if f.endswith(".png")]
        with torch.no_grad():
            latents = vae.encode(torch.stack(pixels)).latent_dist.sample() * vae.config.scaling_factor
            ids = tok(["a photo of a red fox"], padding="max_length", max_length=77, return_tensors="pt").input_ids
            context = te(ids)[0]
        scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=True, target_modules=lora_network.UNET_TARGETS))
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        generator = torch.Generator().manual_seed(0)
        stamps = []
        try:
            for step in range(steps):
                index = torch.randint(0, len(latents), (batch,), generator=generator)
                x0 = latents[index]
                noise = torch.randn(x0.shape, generator=generator)
                t = torch.randint(0, 1000, (batch,), generator=generator)
                pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=context.expand(batch, -1, -1)).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                stamps.append(time.perf_counter())
        finally:
            lora_network.remove_adapters(unet)
        deltas = [b - a for a, b in zip(stamps, stamps[1:])][5:]
        return statistics.median(deltas)
    return shared.job_queue.run(run, name="bench-plain")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()

    import webui
    from modules import cmd_args, shared
    from modules.tiny_models import write_tiny_checkpoint
    root = tempfile.mkdtemp(prefix="bench_train_lora_")
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(root, "models", "Stable-diffusion", "tiny-sd1.safetensors")))
    data = make_data(root, args.size, args.images)
    webui.initialize(cmd_args.parse_args(["--data-dir", root]))
    a, b = [], []
    for _ in range(args.rounds):  # interleaved, so machine load hits both sides alike
        a.append(ours(shared, data, args.size, args.steps, args.batch))
        b.append(plain(shared, data, args.size, args.steps, args.batch))
    ours_s, plain_s = min(a), min(b)
    print(f"tiny SD1 LoRA, {args.size}px, batch {args.batch}, {args.steps} steps x {args.rounds} rounds (best round's median step)")
    print(f"ours (train/lora):      {ours_s * 1000:.1f} ms/step   rounds {[round(x * 1000, 1) for x in a]}")
    print(f"plain diffusers + peft: {plain_s * 1000:.1f} ms/step   rounds {[round(x * 1000, 1) for x in b]}")
    print(f"ratio ours/plain: {ours_s / plain_s:.3f}")


if __name__ == "__main__":
    main()
