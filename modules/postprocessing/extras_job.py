"""One Extras job: every input through the steps, optionally saved (extras.md §4.1, §4.5).
Called on the job queue by the Extras tab and the extras API routes."""
import os
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from modules import images as images_module, infotext_utils, shared
from modules.postprocessing import runner


@dataclass
class ExtrasInput:
    image: Image.Image
    name: str | None = None        # source file stem (batch inputs keep their names when saving)


@dataclass
class ExtrasOutput:
    image: Image.Image
    infotext: str
    parameters: str | None = None  # the source's generation text, carried along
    saved_path: str | None = None
    caption: str | None = None     # from the Caption step; written beside the saved file


@dataclass
class ExtrasResult:
    outputs: list[ExtrasOutput] = field(default_factory=list)

    @property
    def html_info(self) -> str:
        return runner.html_info(self.outputs[-1].infotext) if self.outputs else ""


def prepare(image: Image.Image) -> Image.Image:
    """EXIF rotation, palette transparency, and RGB unless RGB/RGBA."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    return image


def run(inputs: list[ExtrasInput], args: dict[str, dict], save: bool, output_dir: str | None = None,
        steps=None) -> ExtrasResult:
    state = shared.state
    steps = steps if steps is not None else runner.ordered_steps()
    state.job_count = len(inputs)
    result = ExtrasResult()
    for item in inputs:
        if state.interrupted:
            break
        parameters, _ = infotext_utils.read_info_from_image(item.image)
        image = prepare(item.image)
        outputs = runner.run_steps(steps, image, args, should_stop=lambda: state.interrupted)
        used = {}
        for pp in outputs:
            text = runner.infotext(pp.info)
            out = ExtrasOutput(pp.image, text, parameters, caption=pp.caption)
            if save:
                out.saved_path = _save(out, item.name, pp.get_suffix(used), output_dir)
            result.outputs.append(out)
        state.nextjob()
    return result


def _save(out: ExtrasOutput, name: str | None, suffix: str, output_dir: str | None) -> str:
    opts = shared.opts
    folder = output_dir or opts.outdir_samples or opts.outdir_extras_samples
    existing = {"parameters": out.parameters, "postprocessing": out.infotext} if out.parameters else \
        {"postprocessing": out.infotext}
    forced = f"{name}{suffix}" if name and opts.use_original_name_batch else None
    path, _ = images_module.save_image(out.image, folder, "", extension=opts.samples_format,
                                       info=out.infotext, short_filename=True, no_prompt=True,
                                       pnginfo_section_name="extras", existing_info=existing,
                                       forced_filename=forced, suffix="" if forced else suffix,
                                       save_to_dirs=False)
    if out.caption:
        _write_caption(os.path.splitext(path)[0] + ".txt", out.caption)
    return path


def _write_caption(path: str, caption: str) -> None:
    from modules.postprocessing.training_steps import combine_caption
    existing = ""
    if os.path.exists(path):
        with open(path, encoding="utf8") as file:
            existing = file.read()
    text = combine_caption(existing, caption, shared.opts.postprocessing_existing_caption_action)
    if text:
        with open(path, "w", encoding="utf8") as file:
            file.write(text)


def directory_inputs(folder: str) -> list[ExtrasInput]:
    """Batch from directory: non-recursive, natural order, dot-names and unreadable files skipped."""
    import re
    if not os.path.isdir(folder):
        raise ValueError(f"Input directory not found: {folder}")

    def natural(name):
        return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]
    inputs = []
    for name in sorted(os.listdir(folder), key=natural):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        try:
            image = Image.open(path)
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        inputs.append(ExtrasInput(image, os.path.splitext(name)[0]))
    return inputs
