"""Tiny random-weight checkpoints in the A1111 single-file layout, for tests and benchmarks.

    python -m modules.tiny_models --family sd1 --out models/Stable-diffusion/tiny-sd1.safetensors

The file carries the ``sdwebui_architecture`` metadata (see ``modules/models/loader.py``), so it
loads through the normal loader. Sizes follow offline.md §4, except that the VAE has four levels so
that it scales by 8 like the real one. ``sd2-v`` also gets a sidecar
``<stem>.yaml`` with ``parameterization: "v"``. Output is deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from modules.models.ldm_convert import to_ldm_checkpoint
from modules.models.loader import (
    ARCHITECTURE_METADATA_KEY,
    TEXT_ENCODERS,
    family_configs,
    text_encoder_class,
    text_encoder_config,
)

# tiny family name -> (loader family, needs v-prediction sidecar)
TINY_FAMILIES = {
    "sd1": ("sd1", False),
    "sd1-inpaint": ("sd1-inpaint", False),
    "sd1-pix2pix": ("sd1-pix2pix", False),
    "sd2": ("sd2", False),
    "sd2-v": ("sd2", True),
    "sdxl": ("sdxl", False),
    "sdxl-inpaint": ("sdxl-inpaint", False),
    "sdxl-refiner": ("sdxl-refiner", False),
}

# Four levels, not the (8, 16) of offline.md §4: the generation code works with latents of H/8 x W/8
# (generation.md §3.3), so the tiny VAE must scale by 8 like the real one.
_TINY_VAE = {
    "block_out_channels": [8, 8, 16, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}
_TINY_UNET = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 8,
}
_SD_BLOCKS = {
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}
_XL_BLOCKS = {
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4],
    "addition_time_embed_dim": 8,
}


def _text_encoder(hidden: int) -> dict:
    return {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": hidden,
    }


def tiny_overrides(family: str) -> dict[str, dict]:
    """The ``sdwebui_architecture`` overrides of a tiny model of ``family`` (a TINY_FAMILIES key)."""
    base = TINY_FAMILIES[family][0]
    if base in ("sd1", "sd1-inpaint", "sd1-pix2pix"):
        unet = {**_TINY_UNET, **_SD_BLOCKS, "attention_head_dim": 2, "cross_attention_dim": 32}
        return {"unet": unet, "vae": dict(_TINY_VAE), "text_encoder": _text_encoder(32)}
    if base == "sd2":
        unet = {**_TINY_UNET, **_SD_BLOCKS, "attention_head_dim": [2, 4], "cross_attention_dim": 32}
        return {"unet": unet, "vae": dict(_TINY_VAE), "text_encoder": _text_encoder(32)}
    if base in ("sdxl", "sdxl-inpaint"):
        # encoders of hidden size 32 and 48 (must differ: the loader tells them apart by width)
        unet = {**_TINY_UNET, **_XL_BLOCKS, "cross_attention_dim": 32 + 48, "projection_class_embeddings_input_dim": 6 * 8 + 48}
        return {"unet": unet, "vae": dict(_TINY_VAE), "text_encoder": _text_encoder(32), "text_encoder_2": _text_encoder(48)}
    # refiner: one bigG-style encoder; time ids are 5 values (size, crop, aesthetic score)
    unet = {**_TINY_UNET, **_XL_BLOCKS, "cross_attention_dim": 48, "projection_class_embeddings_input_dim": 5 * 8 + 48}
    return {"unet": unet, "vae": dict(_TINY_VAE), "text_encoder_2": _text_encoder(48)}


def build_tiny_models(family: str, seed: int = 0) -> dict:
    """Randomly initialised diffusers/transformers modules of a tiny model, deterministic in seed.

    Returns {"family": loader family, "overrides", "unet", "vae", "text_encoders"}.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose from {sorted(TINY_FAMILIES)}")
    base = TINY_FAMILIES[family][0]
    overrides = tiny_overrides(family)
    configs = family_configs(base, overrides)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        encoders = []
        for component, _pad in TEXT_ENCODERS[base]:
            config = configs[component]
            encoders.append(text_encoder_class(config)(text_encoder_config(config)))
    for model in (unet, vae, *encoders):
        model.eval().requires_grad_(False)
    return {"family": base, "overrides": overrides, "unet": unet, "vae": vae, "text_encoders": encoders}


def _layout_extras(base: str, encoders: list, seed: int) -> dict[str, torch.Tensor]:
    """Tensors real A1111 files carry that the loader must tolerate and ignore."""
    extras = {}
    if base in ("sd1", "sd1-inpaint", "sd1-pix2pix"):
        extras["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    if base in ("sdxl", "sdxl-inpaint"):
        extras["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    if base == "sd2":
        # SD2 files keep OpenCLIP's projection even though SD only uses the hidden states.
        hidden = encoders[0].config.hidden_size
        generator = torch.Generator().manual_seed(seed)
        extras["cond_stage_model.model.text_projection"] = torch.randn(hidden, hidden, generator=generator) * 0.02
    return extras


def write_tiny_checkpoint(family: str, out_path, seed: int = 0) -> Path:
    """Write a tiny checkpoint (.safetensors, or .ckpt/.pt as {"state_dict": …}); returns its path."""
    out_path = Path(out_path)
    built = build_tiny_models(family, seed)
    base = built["family"]
    state = to_ldm_checkpoint(base, built["unet"], built["vae"], built["text_encoders"])
    state.update(_layout_extras(base, built["text_encoders"], seed))
    architecture = json.dumps(built["overrides"], sort_keys=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        # one metadata key only: safetensors stores metadata unordered, and a second key would make
        # the file bytes (and so the checkpoint hash) change from run to run
        save_file(state, str(out_path), metadata={ARCHITECTURE_METADATA_KEY: architecture})
    elif out_path.suffix.lower() in (".ckpt", ".pt"):
        torch.save({"state_dict": state, ARCHITECTURE_METADATA_KEY: architecture}, str(out_path))
    else:
        raise ValueError(f"{out_path}: use a .safetensors, .ckpt or .pt file name")
    if TINY_FAMILIES[family][1]:
        out_path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n', encoding="utf-8")
    return out_path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight checkpoint in the A1111 layout.")
    parser.add_argument("--family", required=True, choices=sorted(TINY_FAMILIES))
    parser.add_argument("--out", required=True, help="output file (.safetensors, .ckpt or .pt)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_tiny_checkpoint(args.family, args.out, args.seed))


if __name__ == "__main__":
    main()
