"""Request and response bodies of the A1111-compatible API (api.md §8, §9, §12).

Every request field is optional and may be null; null means the default. Unknown fields are
ignored, as A1111 does, because clients send legacy and extension fields.
"""
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from modules import value_limits

# Integer fields that reach torch.Generator.manual_seed, which takes -2^63 .. 2^64-1.
SEED_FIELDS = ("seed", "subseed")


class _Request(BaseModel):
    # non-finite floats ("nan", "inf", NaN) are a 422 naming the field, not a NaN image
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _integers_in_range(cls, value, info: ValidationInfo):
        """Every integer field fits in int64 (seeds: manual_seed's range), so that a huge number is
        a 422 naming the field instead of an overflow deep in torch. Subclasses inherit this."""
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = (value_limits.SEED_MIN, value_limits.SEED_MAX) if info.field_name in SEED_FIELDS \
                else (value_limits.INT_MIN, value_limits.INT_MAX)
            problem = value_limits.integer_problem(info.field_name, value, low, high)
            if problem:
                raise ValueError(problem)
        return value

    def with_defaults(self) -> dict:
        """The request as a dict where every null field holds its default."""
        values = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                value = info.get_default(call_default_factory=True)
            values[name] = value
        return values


class _ProcessingRequest(_Request):
    """The fields txt2img and img2img share (api.md §8.1 rows 1-34), in schema order."""
    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int | None = 1
    n_iter: int | None = 1
    steps: int | None = 50
    cfg_scale: float | None = 7.0
    width: int | None = 512
    height: int | None = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool | None = False
    do_not_save_grid: bool | None = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool | None = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool | None = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None


class _JobRequest(_Request):
    """The trailing fields txt2img and img2img share (api.md §8.1, §8.2): task id, scripts, what to
    send back and save. Their place in the schema's field order moves; names and defaults do not."""
    force_task_id: str | None = None
    sampler_index: str | int | None = "Euler"
    script_name: str | None = None
    script_args: list | None = Field(default_factory=list)
    send_images: bool | None = True
    save_images: bool | None = False
    alwayson_scripts: dict[str, Any] | None = Field(default_factory=dict)
    infotext: str | None = None


class StableDiffusionProcessingTxt2Img(_ProcessingRequest, _JobRequest):
    enable_hr: bool | None = False
    firstphase_width: int | None = 0
    firstphase_height: int | None = 0
    hr_scale: float | None = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int | None = 0
    hr_resize_x: int | None = 0
    hr_resize_y: int | None = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = ""
    hr_negative_prompt: str | None = ""


class StableDiffusionProcessingImg2Img(_ProcessingRequest, _JobRequest):
    """api.md §8.2: the shared fields (denoising_strength defaults to 0.75), then img2img's own."""
    denoising_strength: float | None = 0.75
    init_images: list[str] | None = None
    resize_mode: int | None = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int | None = 4
    mask_blur_y: int | None = 4
    mask_blur: int | None = None
    mask_round: bool | None = True
    inpainting_fill: int | None = 0
    inpaint_full_res: bool | None = True
    inpaint_full_res_padding: int | None = 0
    inpainting_mask_invert: int | None = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool | None = False


class ImageToImageResponse(BaseModel):
    images: list[str] | None = None
    parameters: dict
    info: str


class TextToImageResponse(BaseModel):
    images: list[str] | None = None
    parameters: dict
    info: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict
    current_image: str | None = None
    textinfo: str | None = None
