"""Everything an img2img job computes from its init images and mask before sampling
(generation.md §7.2-§7.6): the init latent, the latent masks, the image conditioning, and what the
results need afterwards (overlay images, paste position, colour-correction references)."""
from dataclasses import dataclass, field

import torch
from PIL import Image

from modules import rng
from modules.img2img import encode, fill, masks, overlay
from modules.img2img.resize import LATENT_UPSCALE, RESIZE_AND_FILL, resize_image

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3
MASKED_CONTENT_NAMES = ("fill", "original", "latent noise", "latent nothing")


class Img2ImgInputError(ValueError):
    """An init image or mask that cannot be used; the message names which one and why."""


@dataclass
class Prepared:
    init_latent: torch.Tensor                 # [B, 4, h, w]
    images: list[Image.Image]                 # the images as encoded (resized, cropped, filled)
    mask: torch.Tensor | None = None          # [1, 1, h, w]: 1 = keep the init latent
    nmask: torch.Tensor | None = None         # 1 = regenerate
    image_mask: Image.Image | None = None     # the processed pixel mask at the job size
    paste_to: tuple | None = None             # (x, y, w, h) of an "Only masked" crop
    overlay_images: list = field(default_factory=list)
    overlay_sources: list = field(default_factory=list)  # the init pixels the overlays were cut from
    mask_for_overlay: Image.Image | None = None  # the overlay's mask (1 = the result shows), full size
    color_references: list = field(default_factory=list)
    image_conditioning: torch.Tensor | None = None  # inpainting UNets: [B, 5, h, w]


def flatten(image: Image.Image, background: str) -> Image.Image:
    """A transparent init image is flattened on the background colour (setting
    img2img_background_color); any other image is converted to RGB."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        base = Image.new("RGBA", image.size, background)
        base.alpha_composite(image.convert("RGBA"))
        return base.convert("RGB")
    return image.convert("RGB")


def prepare_mask(p, size) -> Image.Image | None:
    """The job's mask after binarisation, invert and blur, at the init image size."""
    if p.image_mask is None:
        return None
    mask = masks.to_mask(p.image_mask, p.mask_round)
    if mask.size != size:
        raise Img2ImgInputError(f"mask: its size {mask.width}x{mask.height} differs from the init image's "
                                f"{size[0]}x{size[1]}")
    if p.inpainting_mask_invert:
        mask = masks.invert(mask)
    return masks.blur(mask, p.mask_blur_x, p.mask_blur_y)


def prepare(p, model, seeds, background: str, overlay_inpaint: bool, mask_weight: float,
            upscaler: str | None) -> Prepared:
    """Resize/crop/fill the init images, encode them, build masks and conditioning (one batch)."""
    images = [flatten(image, background) for image in p.init_images]
    size = images[0].size
    if any(image.size != size for image in images):
        raise Img2ImgInputError("init_images: all init images must have the same size")
    image_mask = prepare_mask(p, size)
    crop = None
    overlay_mask = None
    if image_mask is not None and p.inpaint_full_res and masks.is_empty(image_mask):
        p.comment("Unable to perform \"Inpaint only mask\" because the mask is blank; "
                  "inpainted the whole picture")
    elif image_mask is not None and p.inpaint_full_res:
        box = masks.crop_region(image_mask, p.inpaint_full_res_padding)
        crop = masks.expand_to_aspect(box, p.width, p.height, *size)
        overlay_mask = image_mask
        image_mask = resize_image(RESIZE_AND_FILL, image_mask.crop(crop), p.width, p.height)
    elif image_mask is not None:
        image_mask = resize_image(p.resize_mode, image_mask, p.width, p.height)
        overlay_mask = masks.doubled(image_mask)

    latent_mask_source = image_mask
    if p.latent_mask is not None and image_mask is not None:
        latent_mask_source = resize_image(p.resize_mode, masks.to_mask(p.latent_mask, p.mask_round),
                                          p.width, p.height)

    prepared_images, overlays, sources, references = [], [], [], []
    for image in images:
        if crop is None and p.resize_mode != LATENT_UPSCALE:
            image = resize_image(p.resize_mode, image, p.width, p.height, upscaler)
        if image_mask is not None and overlay_inpaint:
            overlays.append(overlay.overlay_image(image, overlay_mask))
            sources.append(image)
        if crop is not None:
            image = resize_image(RESIZE_AND_FILL, image.crop(crop), p.width, p.height, upscaler)
        if image_mask is not None and p.inpainting_fill == FILL:
            image = fill.fill(image, latent_mask_source)
        references.append(image)
        prepared_images.append(image)

    batch = p.batch_size
    if len(prepared_images) == 1:
        prepared_images, overlays, references = prepared_images * batch, overlays * batch, references * batch
        sources = sources * batch
    pixels = encode.to_tensor(prepared_images)
    init_latent = encode.encode(model, pixels, seeds[:len(prepared_images)])
    if p.resize_mode == LATENT_UPSCALE and crop is None:
        init_latent = torch.nn.functional.interpolate(init_latent, size=(p.height // 8, p.width // 8),
                                                      mode="bilinear")

    result = Prepared(init_latent=init_latent, images=prepared_images, image_mask=image_mask,
                      overlay_images=overlays, overlay_sources=sources, color_references=references,
                      mask_for_overlay=overlay_mask if overlays else None)
    if crop is not None:
        x1, y1, x2, y2 = crop
        result.paste_to = (x1, y1, x2 - x1, y2 - y1)
    device = init_latent.device
    if image_mask is not None:
        result.mask, result.nmask = masks.latent_masks(latent_mask_source, init_latent.shape[3],
                                                       init_latent.shape[2], p.mask_round, device)
        if p.inpainting_fill == LATENT_NOISE:
            noise = rng.ImageRNG(init_latent.shape[1:], seeds[:init_latent.shape[0]]).first().to(device)
            init_latent = init_latent * result.mask + noise * result.nmask
        elif p.inpainting_fill == LATENT_NOTHING:
            init_latent = init_latent * result.mask
        result.init_latent = init_latent

    if getattr(model, "is_pix2pix", False):
        if p.resize_mode == LATENT_UPSCALE and crop is None:
            pixels = torch.nn.functional.interpolate(pixels, size=(p.height, p.width), mode="bilinear")
        result.image_conditioning = encode.pix2pix_conditioning(model, pixels)
    elif model.is_inpainting:
        if image_mask is None:  # no mask: the whole image counts as masked (A1111)
            cond_mask = torch.ones(1, 1, pixels.shape[2], pixels.shape[3])
        else:
            cond_mask = masks.pixel_mask(image_mask, p.mask_round)
        if p.resize_mode == LATENT_UPSCALE and crop is None:
            pixels = torch.nn.functional.interpolate(pixels, size=(p.height, p.width), mode="bilinear")
            cond_mask = torch.nn.functional.interpolate(cond_mask, size=(p.height, p.width))
        result.image_conditioning = encode.inpainting_conditioning(model, pixels, cond_mask, mask_weight,
                                                              tuple(init_latent.shape[2:]))
    return result

