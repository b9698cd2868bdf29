"""A1111's per-key merge rules (merge-train.md §1.4), with our architecture check in front."""
from __future__ import annotations

from modules.merge.errors import MergeError

# never merged: kept exactly as model A has it
SKIP_KEYS = frozenset({"cond_stage_model.transformer.text_model.embeddings.position_ids"})
CONV_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"


def is_mergeable(key: str) -> bool:
    """A1111 merges keys containing "model" (UNet, text encoders, VAE, EMA), not schedule buffers."""
    return "model" in key and key not in SKIP_KEYS


def layout_of(keys, path: str) -> str:
    """'sdxl' (9 + middle + 9 blocks) or 'sd' (SD1/SD2: 12 + middle + 12)."""
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise MergeError(f"{path}: not a Stable Diffusion checkpoint (it has no model.diffusion_model.* UNet weights)")
    if any(k.startswith(("conditioner.embedders.1.", "model.diffusion_model.label_emb.")) for k in keys):
        return "sdxl"
    return "sd"


def family_name(shapes: dict) -> str:
    """A readable family for messages (sd1, sd2, sdxl, ...), from the key shapes alone."""
    from modules.models.detection import detect_family
    from modules.models.errors import ModelLoadError
    probe = dict(shapes)
    if CONV_IN_KEY in probe and len(probe[CONV_IN_KEY]) == 4 and probe[CONV_IN_KEY][1] != 4:
        channels = probe[CONV_IN_KEY][1]
        probe[CONV_IN_KEY] = (probe[CONV_IN_KEY][0], 4, *probe[CONV_IN_KEY][2:])
        try:
            return f"{detect_family(probe)} ({channels}-channel)"
        except ModelLoadError:
            return f"unknown ({channels}-channel)"
    try:
        return detect_family(probe)
    except ModelLoadError:
        return "unknown"


def channel_rule(key: str, shape_a: tuple, shape_other: tuple, other: str) -> tuple[int | None, str | None]:
    """For an eligible key whose shapes differ: (channels of A to merge, flag) or a MergeError.

    Only the first convolution may differ, and only in its input channels: an inpainting (9) or
    instruct-pix2pix (8) model A merged with a normal (4) model merges A[:, :4] and keeps the rest.
    """
    same_elsewhere = (key == CONV_IN_KEY and len(shape_a) == len(shape_other) >= 2 and shape_a[0] == shape_other[0]
                      and shape_a[2:] == shape_other[2:])
    if same_elsewhere:
        a_ch, o_ch = shape_a[1], shape_other[1]
        if a_ch == 4 and o_ch == 9:
            raise MergeError(f"{key}: {other} is an inpainting model (9 input channels) and A is not; "
                             "A must be the inpainting model")
        if a_ch == 4 and o_ch == 8:
            raise MergeError(f"{key}: {other} is an instruct-pix2pix model (8 input channels) and A is not; "
                             "A must be the instruct-pix2pix model")
        if a_ch == 9 and o_ch == 4:
            return 4, "inpainting"
        if a_ch == 8 and o_ch == 4:
            return 4, "instruct-pix2pix"
    raise MergeError(f"the models do not have the same architecture: {key} is {list(shape_a)} in A "
                     f"and {list(shape_other)} in {other}; nothing was written")
