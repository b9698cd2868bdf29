"""The Train-tab fields the embedding and hypernetwork trainers share, with A1111's names (api.md §13)."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(kw_only=True)
class SharedTrainArgs:
    """Each trainer adds its name field and its own `save_*_every`, and gives `learn_rate` and
    `template_filename` its own default. `seed` is ours (None: random)."""
    learn_rate: str
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str = ""
    log_directory: str = "textual_inversion"
    training_width: int = 512
    training_height: int = 512
    varsize: bool = False
    steps: int = 100000
    clip_grad_mode: str = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0
    latent_sampling_method: str = "once"
    use_weight: bool = False
    create_image_every: int = 500
    template_filename: str
    preview_from_txt2img: bool = False
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    preview_steps: int = 20
    preview_sampler_name: str = "Euler a"
    preview_cfg_scale: float = 7.0
    preview_seed: int = -1
    preview_width: int = 512
    preview_height: int = 512
    seed: int | None = None

    @classmethod
    def from_dict(cls, values: dict):
        """The known fields of `values` (the UI passes more); unknown keys are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
