"""Prompts from file or textbox (extensions.md §8.2): one job per line; a line is a prompt, or
`--key value` arguments that set the job's fields."""
import copy
import random
import shlex

import gradio as gr

from modules import processing, scripts, sd_models, sd_samplers, shared
from modules.processing import Processed


def _process_string_tag(tag):
    return tag


def _process_int_tag(tag):
    return int(tag)


def _process_float_tag(tag):
    return float(tag)


def _process_boolean_tag(tag):
    return tag == "true"


def _process_model_tag(tag):
    info = sd_models.get_closet_checkpoint_match(tag)
    if info is None:
        raise ValueError(f"Unknown checkpoint: {tag}")
    return info.title


def _process_sampler_tag(tag):
    return sd_samplers.find_sampler(tag).name  # names and aliases, case-insensitive


TAGS = {
    "sd_model": _process_model_tag, "outpath_samples": _process_string_tag, "outpath_grids": _process_string_tag,
    "prompt_for_display": _process_string_tag, "prompt": _process_string_tag,
    "negative_prompt": _process_string_tag, "styles": _process_string_tag, "seed": _process_int_tag,
    "subseed_strength": _process_float_tag, "subseed": _process_int_tag, "seed_resize_from_h": _process_int_tag,
    "seed_resize_from_w": _process_int_tag, "sampler_index": _process_int_tag, "sampler_name": _process_sampler_tag,
    "batch_size": _process_int_tag, "n_iter": _process_int_tag, "steps": _process_int_tag,
    "cfg_scale": _process_float_tag, "width": _process_int_tag, "height": _process_int_tag,
    "restore_faces": _process_boolean_tag, "tiling": _process_boolean_tag, "do_not_save_samples": _process_boolean_tag,
    "do_not_save_grid": _process_boolean_tag,
}


def cmdargs(line: str) -> dict:
    """`--key value ...` → {key: converted value}; --prompt / --negative_prompt take every word up to
    the next `--`. Raises ValueError for an unknown key or a bad value."""
    args = shlex.split(line)
    res, pos = {}, 0
    while pos < len(args):
        arg = args[pos]
        if not arg.startswith("--"):
            raise ValueError(f"must start with '--': {arg}")
        if pos + 1 >= len(args):
            raise ValueError(f"missing argument for command line option {arg}")
        tag = arg[2:]
        if tag in ("prompt", "negative_prompt"):
            pos += 1
            words = []
            while pos < len(args) and not args[pos].startswith("--"):
                words.append(args[pos])
                pos += 1
            res[tag] = " ".join(words)
            continue
        func = TAGS.get(tag)
        if func is None:
            raise ValueError(f"unknown commandline option: {arg}")
        value = args[pos + 1]
        if tag == "sampler_name":
            value = value.lower()
        res[tag] = func(value)
        pos += 2
    return res


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False,
                                       elem_id=self.elem_id("checkbox_iterate"))
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                             elem_id=self.elem_id("checkbox_iterate_batch"))
        prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the", value="start",
                                   elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=2, elem_id=self.elem_id("prompt_txt"))
        file = gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file"))
        file.change(lambda data: data.decode("utf8", errors="replace") if data else gr.skip(),
                    inputs=[file], outputs=[prompt_txt], api_visibility="private")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt):
        lines = [line for line in (x.strip() for x in (prompt_txt or "").splitlines()) if line]
        p.do_not_save_grid = True
        jobs = []
        job_count = 0
        for line in lines:
            if "--" in line:
                try:
                    args = cmdargs(line)
                except (ValueError, sd_samplers.SamplerNotFound) as e:
                    print(f"Prompts from file: line {line!r} is used as a plain prompt ({e})")
                    args = {"prompt": line}
            else:
                args = {"prompt": line}
            job_count += args.get("n_iter", p.n_iter)
            jobs.append(args)
        print(f"Will process {len(lines)} lines in {job_count} jobs.")
        if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
            p.seed = int(random.randrange(4294967294))
        state = shared.state
        state.job_count = job_count
        images, all_prompts, infotexts = [], [], []
        for args in jobs:
            if state.interrupted:
                break
            state.job = f"{state.job_no + 1} out of {state.job_count}"
            cell = copy.copy(p)
            cell.override_settings = dict(p.override_settings or {})
            cell.extra_generation_params = dict(p.extra_generation_params)
            cell.styles = list(p.styles or [])
            for key, value in args.items():
                if key == "sd_model":
                    cell.override_settings["sd_model_checkpoint"] = value
                elif key == "styles":
                    cell.styles = [s.strip() for s in value.split(",") if s.strip()]
                elif key == "prompt" and p.prompt:
                    cell.prompt = f"{p.prompt} {value}" if prompt_position == "end" else f"{value} {p.prompt}"
                elif key == "negative_prompt" and p.negative_prompt:
                    cell.negative_prompt = f"{p.negative_prompt} {value}" if prompt_position == "end" \
                        else f"{value} {p.negative_prompt}"
                elif key == "sampler_index":
                    cell.sampler_name = sd_samplers.visible_sampler_names()[value]
                else:
                    setattr(cell, key, value)
            processed = processing.process_images(cell)
            images += processed.images
            all_prompts += processed.all_prompts
            infotexts += processed.infotexts
            if checkbox_iterate:
                p.seed = p.seed + (p.batch_size * p.n_iter)
        return Processed(p=p, images=images, seed=p.seed, info=infotexts[0] if infotexts else "",
                         all_prompts=all_prompts, infotexts=infotexts)
