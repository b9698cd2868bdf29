"""Folders of the program and of the user's data, derived from the command-line flags."""
import os
from dataclasses import dataclass

script_path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Paths:
    data: str
    models: str
    checkpoints: str          # models/Stable-diffusion
    checkpoint_extra: str | None  # --ckpt-dir
    vae: str                  # models/VAE
    vae_extra: str | None     # --vae-dir
    embeddings: str
    outputs: str
    settings_file: str
    cache_file: str
    params_file: str

    @classmethod
    def from_args(cls, args) -> "Paths":
        data = args.data_dir or script_path
        models = args.models_dir or os.path.join(data, "models")
        return cls(
            data=data,
            models=models,
            checkpoints=os.path.join(models, "Stable-diffusion"),
            checkpoint_extra=args.ckpt_dir,
            vae=os.path.join(models, "VAE"),
            vae_extra=args.vae_dir,
            embeddings=args.embeddings_dir or os.path.join(data, "embeddings"),
            outputs=os.path.join(data, "outputs"),
            settings_file=args.ui_settings_file or os.path.join(data, "config.json"),
            cache_file=os.path.join(data, "cache.json"),
            params_file=os.path.join(data, "params.txt"),
        )
