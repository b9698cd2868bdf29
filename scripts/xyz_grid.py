"""X/Y/Z plot (extensions.md §8.3, §9): one generation per combination of up to three axes, as a
labelled grid. Built on the same Script API extensions use."""
import copy
import csv
import io
import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr
from PIL import Image

from modules import images, processing, scripts, sd_models, sd_samplers, sd_schedulers, sd_vae, shared
from modules.grid_annotations import GridAnnotation, draw_grid_annotations, grid_with_margin
from modules.processing import GenerationError


# -- applying values ------------------------------------------------------------------------------

def apply_field(name):
    def apply(p, value, xs):
        setattr(p, name, value)
    return apply


def apply_setting(key):
    def apply(p, value, xs):
        if key not in shared.opts.data_labels:
            raise GenerationError(f"X/Y/Z plot: this version has no setting '{key}' for this axis")
        p.override_settings[key] = value
    return apply


def apply_prompt_sr(p, value, xs):
    search = xs[0]
    if search not in p.prompt and search not in p.negative_prompt:
        raise GenerationError(f"Prompt S/R did not find {search} in prompt or negative prompt.")
    p.prompt = p.prompt.replace(search, value)
    p.negative_prompt = p.negative_prompt.replace(search, value)
    if getattr(p, "hr_prompt", None):
        p.hr_prompt = p.hr_prompt.replace(search, value)


def apply_prompt_order(p, order, xs):
    """Rewrite the fragments of `order`, found in the prompt by first occurrence, in that order."""
    found = sorted((p.prompt.find(token), token) for token in order)
    if any(pos < 0 for pos, _ in found):
        missing = [t for pos, t in found if pos < 0]
        raise GenerationError(f"Prompt order: {', '.join(missing)} not found in the prompt")
    parts, last = [], 0
    for pos, token in found:
        parts.append(p.prompt[last:pos])
        last = pos + len(token)
    parts.append(p.prompt[last:])
    text = parts[0]
    for i, token in enumerate(order):
        text += token + parts[i + 1]
    p.prompt = text


def apply_checkpoint(p, value, xs):
    info = sd_models.get_closet_checkpoint_match(value)
    if info is None:
        raise GenerationError(f"Checkpoint '{value}' not found")
    p.override_settings["sd_model_checkpoint"] = info.title


def apply_vae(p, value, xs):
    choices = {name.lower(): name for name in sd_vae.vae_dict}
    lowered = value.strip().lower()
    p.override_settings["sd_vae"] = "None" if lowered == "none" else choices.get(lowered, "Automatic")


def apply_styles(p, value, xs):
    p.styles = list(p.styles or []) + [s.strip() for s in value.split(",") if s.strip()]


def apply_uni_pc_order(p, value, xs):
    p.override_settings["uni_pc_order"] = min(int(value), p.steps - 1)


def apply_face_restore(p, value, xs):
    text = value.strip().lower()
    if text in ("codeformer", "gfpgan"):
        p.override_settings["face_restoration_model"] = "CodeFormer" if text == "codeformer" else "GFPGAN"
        p.restore_faces = True
    else:
        p.restore_faces = text in ("true", "yes", "y", "1")


def apply_size(p, value, xs):
    width, height = (int(v.strip()) for v in value.lower().split("x"))
    p.width, p.height = width, height


def apply_bool_setting(key):
    setting = apply_setting(key)

    def apply(p, value, xs):
        setting(p, str(value).strip().lower() == "true", xs)
    return apply


def apply_refiner(p, value, xs):
    if value == "None":
        p.refiner_checkpoint = None
        return
    info = sd_models.get_closet_checkpoint_match(value)
    if info is None:
        raise GenerationError(f"Refiner checkpoint '{value}' not found")
    p.refiner_checkpoint = info.title


def do_nothing(p, value, xs):
    pass


def format_with_label(opt, value):
    if isinstance(value, float):
        value = round(value, 8)
    return f"{opt.label}: {value}"


def format_plain(opt, value):
    return str(value)


def format_order(opt, value):
    return ", ".join(value)


def format_nothing(opt, value):
    return ""


@dataclass
class AxisOption:
    label: str
    type: Callable
    apply: Callable
    format_value: Callable = format_with_label
    confirm: Callable | None = None
    cost: float = 0.0
    choices: Callable | None = None
    tabs: str = "both"  # "txt2img", "img2img" or "both"
    extra: dict = field(default_factory=dict)


def _sampler_names():
    return sd_samplers.visible_sampler_names()


def _confirm_samplers(opt, values):
    for value in values:
        try:
            sd_samplers.find_sampler(value)
        except sd_samplers.SamplerNotFound:
            raise GenerationError(f"Unknown sampler: {value}") from None


def _confirm_checkpoints(opt, values):
    for value in values:
        if value != "None" and sd_models.get_closet_checkpoint_match(value) is None:
            raise GenerationError(f"Unknown checkpoint: {value}")


def _confirm_range(low, high):
    def confirm(opt, values):
        for value in values:
            if not low <= value <= high:
                raise GenerationError(f"{opt.label} must be between {low} and {high}, got {value}")
    return confirm


def _hires_upscalers():
    from modules import hires
    return hires.upscaler_choices()


def _checkpoints():
    return sorted(sd_models.checkpoint_titles(), key=str.lower)


AXES = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Var. seed", int, apply_field("subseed")),
    AxisOption("Var. strength", float, apply_field("subseed_strength"), confirm=_confirm_range(0, 1)),
    AxisOption("Steps", int, apply_field("steps"), confirm=_confirm_range(1, 1000)),
    AxisOption("Hires steps", int, apply_field("hr_second_pass_steps"), tabs="txt2img"),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOption("Image CFG Scale", float, apply_field("image_cfg_scale"), tabs="img2img"),
    AxisOption("Prompt S/R", str, apply_prompt_sr, format_value=format_plain),
    AxisOption("Prompt order", str, apply_prompt_order, format_value=format_order),
    AxisOption("Sampler", str, apply_field("sampler_name"), format_value=format_plain, confirm=_confirm_samplers,
               choices=_sampler_names),
    AxisOption("Hires sampler", str, apply_field("hr_sampler_name"), format_value=format_plain,
               confirm=_confirm_samplers, choices=_sampler_names, tabs="txt2img"),
    AxisOption("Checkpoint name", str, apply_checkpoint, format_value=format_plain, confirm=_confirm_checkpoints,
               cost=1.0, choices=_checkpoints),
    AxisOption("Negative Guidance minimum sigma", float, apply_field("s_min_uncond")),
    AxisOption("Sigma Churn", float, apply_field("s_churn")),
    AxisOption("Sigma min", float, apply_field("s_tmin")),
    AxisOption("Sigma max", float, apply_field("s_tmax")),
    AxisOption("Sigma noise", float, apply_field("s_noise")),
    AxisOption("Schedule type", str, apply_field("scheduler"), format_value=format_plain,
               choices=lambda: [s.label for s in sd_schedulers.schedulers]),
    AxisOption("Schedule min sigma", float, apply_setting("sigma_min")),
    AxisOption("Schedule max sigma", float, apply_setting("sigma_max")),
    AxisOption("Schedule rho", float, apply_setting("rho")),
    AxisOption("Beta schedule alpha", float, apply_setting("beta_dist_alpha")),
    AxisOption("Beta schedule beta", float, apply_setting("beta_dist_beta")),
    AxisOption("Eta", float, apply_field("eta")),
    AxisOption("Clip skip", int, apply_setting("CLIP_stop_at_last_layers")),
    AxisOption("Denoising", float, apply_field("denoising_strength"), confirm=_confirm_range(0, 1)),
    AxisOption("Initial noise multiplier", float, apply_setting("initial_noise_multiplier")),
    AxisOption("Extra noise", float, apply_setting("img2img_extra_noise")),
    AxisOption("Hires upscaler", str, apply_field("hr_upscaler"), format_value=format_plain,
               choices=_hires_upscalers, tabs="txt2img"),
    AxisOption("Cond. Image Mask Weight", float, apply_setting("inpainting_mask_weight"), tabs="img2img"),
    AxisOption("VAE", str, apply_vae, format_value=format_plain, cost=0.7,
               choices=lambda: ["Automatic", "None", *sd_vae.vae_dict]),
    AxisOption("Styles", str, apply_styles, format_value=format_plain,
               choices=lambda: list(shared.prompt_styles.styles)),
    AxisOption("UniPC Order", int, apply_uni_pc_order, cost=0.5),
    AxisOption("Face restore", str, apply_face_restore, format_value=format_plain),
    AxisOption("Token merging ratio", float, apply_setting("token_merging_ratio")),
    AxisOption("Token merging ratio high-res", float, apply_setting("token_merging_ratio_hr")),
    AxisOption("Always discard next-to-last sigma", str, apply_bool_setting("always_discard_next_to_last_sigma"),
               format_value=format_plain, choices=lambda: ["False", "True"]),
    AxisOption("SGM noise multiplier", str, apply_bool_setting("sgm_noise_multiplier"),
               format_value=format_plain, choices=lambda: ["False", "True"]),
    AxisOption("Refiner checkpoint", str, apply_refiner, format_value=format_plain, confirm=_confirm_checkpoints,
               cost=1.0, choices=lambda: ["None", *_checkpoints()]),
    AxisOption("Refiner switch at", float, apply_field("refiner_switch_at")),
    AxisOption("RNG source", str, apply_setting("randn_source"), format_value=format_plain,
               choices=lambda: ["GPU", "CPU", "NV"]),
    AxisOption("FP8 mode", str, apply_setting("fp8_storage"), format_value=format_plain,
               choices=lambda: ["Disable", "Enable for SDXL", "Enable"]),
    AxisOption("Size", str, apply_size, format_value=format_plain),
]


def axis_options(is_img2img: bool) -> list[AxisOption]:
    tab = "img2img" if is_img2img else "txt2img"
    return [opt for opt in AXES if opt.tabs in ("both", tab)]


# -- parsing values ---------------------------------------------------------------------------------

RE_RANGE = re.compile(r"^\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*$")
RE_RANGE_FLOAT = re.compile(r"^\s*([+-]?\s*\d+(?:\.\d*)?)\s*-\s*([+-]?\s*\d+(?:\.\d*)?)(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*$")
RE_RANGE_COUNT = re.compile(r"^\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*\])\s*$")
RE_RANGE_COUNT_FLOAT = re.compile(r"^\s*([+-]?\s*\d+(?:\.\d*)?)\s*-\s*([+-]?\s*\d+(?:\.\d*)?)(?:\s*\[(\d+(?:\.\d*)?)\s*\])\s*$")


def csv_values(text: str) -> list[str]:
    if not text.strip():
        return []
    return [value.strip() for value in next(csv.reader(io.StringIO(text), skipinitialspace=True))
            if value.strip()]


def _linspace(start, end, count):
    if count <= 1:
        return [start]
    return [start + (end - start) * i / (count - 1) for i in range(count)]


def parse_values(opt: AxisOption, text: str, dropdown: list, csv_mode: bool) -> list:
    if opt.label == "Nothing":
        return [0]
    if opt.choices is not None and not csv_mode:
        items = list(dropdown or [])
    else:
        items = csv_values(text)
    if opt.type is int:
        values = []
        for item in items:
            m, mc = RE_RANGE.fullmatch(item), RE_RANGE_COUNT.fullmatch(item)
            if m:
                start, end = int(m.group(1).replace(" ", "")), int(m.group(2).replace(" ", ""))
                step = int(m.group(3)) if m.group(3) is not None else 1
                values += list(range(start, end + (1 if step > 0 else -1), step))
            elif mc:
                start, end, count = int(mc.group(1).replace(" ", "")), int(mc.group(2).replace(" ", "")), int(mc.group(3))
                values += [int(v) for v in _linspace(start, end, count)]
            else:
                values.append(_convert(opt, item, int))
        return values
    if opt.type is float:
        values = []
        for item in items:
            m, mc = RE_RANGE_FLOAT.fullmatch(item), RE_RANGE_COUNT_FLOAT.fullmatch(item)
            if m and m.group(3) is not None:
                start, end = float(m.group(1).replace(" ", "")), float(m.group(2).replace(" ", ""))
                step = float(m.group(3))
                count = int((end - start) / step + 1) if step else 1
                values += [start + step * i for i in range(max(count, 1))]
            elif mc:
                start, end = float(mc.group(1).replace(" ", "")), float(mc.group(2).replace(" ", ""))
                values += _linspace(start, end, int(float(mc.group(3))))
            else:
                values.append(_convert(opt, item, float))
        return values
    if opt.label == "Prompt order":
        return [list(order) for order in itertools.permutations(items)]
    if opt.label == "Size":
        valid = []
        for item in items:
            if re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", item):
                valid.append(item)
            else:
                print(f"X/Y/Z plot: invalid size '{item}' skipped (use WxH)")
        return valid
    return items


def _convert(opt, item, kind):
    try:
        return kind(item)
    except ValueError:
        raise GenerationError(f"X/Y/Z plot: '{item}' is not a valid {kind.__name__} for axis {opt.label}") from None


def resolve_axis(options: list[AxisOption], value) -> AxisOption:
    """An axis by index into the tab's list (A1111) or by its label."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        for opt in options:
            if opt.label.lower() == value.strip().lower():
                return opt
        raise GenerationError(f"X/Y/Z plot: unknown axis type '{value}'")
    index = int(value)
    if not 0 <= index < len(options):
        raise GenerationError(f"X/Y/Z plot: axis type index {index} is out of range (0-{len(options) - 1})")
    return options[index]


# -- the script ----------------------------------------------------------------------------------------

def _copy_p(p):
    cell = copy.copy(p)
    cell.override_settings = dict(p.override_settings or {})
    cell.extra_generation_params = dict(p.extra_generation_params)
    cell.styles = list(p.styles or [])
    cell.comments = dict(p.comments or {})
    return cell


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        labels = [opt.label for opt in axis_options(is_img2img)]
        controls = []
        for axis, default in (("x", 1), ("y", 0), ("z", 0)):
            with gr.Row():
                axis_type = gr.Dropdown(label=f"{axis.upper()} type", choices=labels, value=labels[default],
                                        type="index", elem_id=self.elem_id(f"{axis}_type"))
                values = gr.Textbox(label=f"{axis.upper()} values", lines=1, elem_id=self.elem_id(f"{axis}_values"))
                dropdown = gr.Dropdown(label=f"{axis.upper()} values", multiselect=True, choices=[], value=[],
                                       visible=False, elem_id=self.elem_id(f"{axis}_values_dropdown"))
            controls += [axis_type, values, dropdown]
        with gr.Row():
            draw_legend = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
            include_lone_images = gr.Checkbox(label="Include Sub Images", value=False,
                                              elem_id=self.elem_id("include_lone_images"))
            include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False,
                                            elem_id=self.elem_id("include_sub_grids"))
            no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False, elem_id=self.elem_id("no_fixed_seeds"))
        with gr.Row():
            vary_x = gr.Checkbox(label="Vary seeds for X", value=False, elem_id=self.elem_id("vary_seeds_x"))
            vary_y = gr.Checkbox(label="Vary seeds for Y", value=False, elem_id=self.elem_id("vary_seeds_y"))
            vary_z = gr.Checkbox(label="Vary seeds for Z", value=False, elem_id=self.elem_id("vary_seeds_z"))
        margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                elem_id=self.elem_id("margin_size"))
        csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False,
                               elem_id=self.elem_id("csv_mode"))
        options = axis_options(is_img2img)

        def show_values(index, use_csv):
            opt = options[index or 0]
            has_choices = opt.choices is not None and not use_csv
            return (gr.Textbox(visible=not has_choices),
                    gr.Dropdown(visible=has_choices, choices=opt.choices() if opt.choices else [], value=[]))
        for i in range(3):
            axis_type, values, dropdown = controls[i * 3:i * 3 + 3]
            axis_type.change(show_values, inputs=[axis_type, csv_mode], outputs=[values, dropdown],
                             queue=False, api_visibility="private")
        return controls + [draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
                           vary_x, vary_y, vary_z, margin_size, csv_mode]

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
            z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
            vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode):
        options = axis_options(self.is_img2img)
        axes, raw_texts = [], []
        for kind, text, dropdown in ((x_type, x_values, x_values_dropdown), (y_type, y_values, y_values_dropdown),
                                     (z_type, z_values, z_values_dropdown)):
            opt = resolve_axis(options, kind)
            values = parse_values(opt, text or "", dropdown, bool(csv_mode))
            if not values:
                raise GenerationError(f"X/Y/Z plot: no values for axis {opt.label}")
            if opt.confirm is not None and opt.label != "Nothing":
                opt.confirm(opt, values)
            raw = text if (opt.choices is None or csv_mode) else ", ".join(map(str, dropdown or []))
            axes.append((opt, values))
            raw_texts.append(raw)
        if not no_fixed_seeds:
            processing.fix_seed(p)
        for i, (opt, values) in enumerate(axes):  # -1 seeds on seed axes become fixed random seeds
            if opt.label in ("Seed", "Var. seed") and not no_fixed_seeds:
                axes[i] = (opt, [random.randrange(4294967294) if v in (-1, None) else v for v in values])
        (x_opt, xs), (y_opt, ys), (z_opt, zs) = axes
        cells = len(xs) * len(ys) * len(zs)
        state = shared.state
        state.job_count = cells * p.n_iter
        print(f"X/Y/Z plot will create {cells * p.n_iter * p.batch_size} images on "
              f"{len(zs)} {len(xs)}x{len(ys)} grid{'s' if len(zs) > 1 else ''}")

        results: dict[tuple, Any] = {}
        # axes with a higher cost (checkpoint, VAE) change in the outer loop: fewer model switches
        order = sorted(range(3), key=lambda i: -axes[i][0].cost)
        ranges = [range(len(v)) for _, v in axes]
        first_cell_p = None
        for combo in itertools.product(*(ranges[i] for i in order)):
            if state.interrupted:
                break
            index = [0, 0, 0]
            for axis, value in zip(order, combo):
                index[axis] = value
            ix, iy, iz = index
            cell = _copy_p(p)
            cell.scripts = p.scripts
            for (opt, values), i in zip(axes, (ix, iy, iz)):
                opt.apply(cell, values[i], values)
            for vary, i in ((vary_seeds_x, ix), (vary_seeds_y, iy), (vary_seeds_z, iz)):
                if vary:
                    cell.seed = cell.seed + i
            state.job = f"{len(results) + 1} out of {cells}"
            processed = processing.process_images(cell)
            if first_cell_p is None:
                first_cell_p = cell
            results[(ix, iy, iz)] = processed
        if not results:
            return processing.Processed(p=p, images=[], seed=p.seed, info="", interrupted=True)
        return self._assemble(p, first_cell_p, axes, raw_texts, results, draw_legend, include_lone_images,
                              include_sub_grids, int(margin_size or 0))

    def _assemble(self, p, first_p, axes, raw_texts, results, draw_legend, include_lone_images, include_sub_grids,
                  margin):
        (x_opt, xs), (y_opt, ys), (z_opt, zs) = axes
        sample = next(iter(results.values()))
        blank = None
        cell_images, cell_infos = [], []
        sub_grids = []
        for iz in range(len(zs)):
            row_images = []
            for iy in range(len(ys)):
                for ix in range(len(xs)):
                    processed = results.get((ix, iy, iz))
                    image = None
                    if processed is not None and processed.images:
                        image = processed.images[processed.index_of_first_image]
                        cell_images.append(image)
                        cell_infos.append(processed.infotexts[processed.index_of_first_image])
                    if image is None:  # interrupted before this cell
                        ref = sample.images[0] if sample.images else None
                        blank = blank or Image.new("RGB", ref.size if ref else (p.width, p.height))
                        image = blank
                    row_images.append(image)
            grid = grid_with_margin(row_images, len(xs), margin)
            w, h = row_images[0].size
            if draw_legend:
                hor = [[GridAnnotation(x_opt.format_value(x_opt, x))] for x in xs] if x_opt.label != "Nothing" else []
                ver = [[GridAnnotation(y_opt.format_value(y_opt, y))] for y in ys] if y_opt.label != "Nothing" else []
                if hor or ver:
                    grid = draw_grid_annotations(grid, w, h, hor or [[] for _ in xs], ver or [[] for _ in ys], margin)
            sub_grids.append(grid)
        if len(zs) > 1:
            main = grid_with_margin(sub_grids, len(zs), margin)
            if draw_legend and z_opt.label != "Nothing":
                main = draw_grid_annotations(main, sub_grids[0].width, sub_grids[0].height,
                                             [[GridAnnotation(z_opt.format_value(z_opt, z))] for z in zs],
                                             [[]], margin)
        else:
            main = sub_grids[0]

        params = first_p.extra_generation_params
        params["Script"] = self.title()
        for name, (opt, values), raw in zip("XYZ", axes, raw_texts):
            if opt.label == "Nothing":
                continue
            params[f"{name} Type"] = opt.label
            params[f"{name} Values"] = raw.strip()
            if opt.label in ("Seed", "Var. seed"):
                params[f"Fixed {name} Values"] = ", ".join(str(v) for v in values)
        grid_info = processing.create_infotext(first_p, first_p.all_prompts, first_p.all_seeds,
                                               first_p.all_subseeds, index=0)
        out_images, out_infos = [main], [grid_info]
        if include_sub_grids and len(zs) > 1:
            out_images += sub_grids
            out_infos += [grid_info] * len(sub_grids)
        if include_lone_images:
            out_images += cell_images
            out_infos += cell_infos
        opts = shared.opts
        if opts.grid_save and not p.do_not_save_grid:
            folder = images.grid_folder(p)
            for image in out_images[:1 + (len(sub_grids) if include_sub_grids and len(zs) > 1 else 0)]:
                images.save_image(image, folder, "xyz_grid", first_p.all_seeds[0], first_p.all_prompts[0],
                                  opts.grid_format, info=grid_info, grid=True, p=first_p,
                                  short_filename=not opts.grid_extended_filename)
        return processing.Processed(
            p=first_p, images=out_images, seed=first_p.all_seeds[0], info=grid_info,
            subseed=first_p.all_subseeds[0], all_prompts=first_p.all_prompts,
            all_negative_prompts=first_p.all_negative_prompts, all_seeds=first_p.all_seeds,
            all_subseeds=first_p.all_subseeds, infotexts=out_infos, index_of_first_image=1)

