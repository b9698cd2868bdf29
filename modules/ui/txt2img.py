"""The txt2img tab: prompt boxes, the basic settings, Generate/Interrupt, gallery and infotext."""
import html
import os

import gradio as gr

from modules import jobs, processing, sd_models, sd_samplers, sd_schedulers, shared
from modules.ui import save_outputs, styles_ui
from modules.models.loader import ModelLoadError
from modules.ui.jobs_ui import watch_job

# Errors whose message tells the user what to do; anything else is a bug and shows its type too.
USER_ERRORS = (processing.GenerationError, sd_models.NoModelError, sd_models.CheckpointNotFound,
               sd_samplers.SamplerNotFound, ModelLoadError)


def generate(prompt, negative_prompt, selected_styles, sampler_name, scheduler, steps, cfg_scale, seed, width,
             height, batch_count, batch_size, request: gr.Request, progress=gr.Progress()):
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt=negative_prompt, styles=list(selected_styles or []),
        sampler_name=sampler_name, scheduler=scheduler, steps=int(steps), cfg_scale=float(cfg_scale), seed=int(seed),
        width=int(width), height=int(height), n_iter=int(batch_count), batch_size=int(batch_size),
        user=getattr(request, "username", None))
    watcher = watch_job(lambda: processing.process_images(p), "txt2img", progress,
                        task_id=jobs.new_task_id("txt2img"))
    while True:
        try:
            preview = next(watcher)
        except StopIteration as done:
            processed = done.value
            break
        except USER_ERRORS as e:
            yield [], "", f"<div class='error'>{html.escape(str(e))}</div>", []
            return
        yield [preview], gr.update(), gr.update(), gr.update()  # live preview while sampling
    for image, text in zip(processed.images, processed.infotexts):
        image.info["parameters"] = text  # Gradio writes it into the PNG it serves
    notes = html.escape(processed.comments).replace("\n", "<br>") if processed.comments else ""
    yield processed.images, processed.info, notes, processed.infotexts


# infotext key for each pasted field, in the order of PASTE_FIELDS below
PASTE_KEYS = ["Prompt", "Negative prompt", "Sampler", "Schedule type", "Steps", "CFG scale", "Seed",
              "Size-1", "Size-2"]


def paste_parameters(prompt: str):
    """The paste button: infotext typed into the prompt box, or the last generation's (params.txt)
    when the box is empty, goes into the fields (honouring infotext_skip_pasting, send_seed, send_size)."""
    from modules.ui.png_info import fields_from_infotext
    text = prompt
    if not text.strip():
        if not os.path.exists(shared.paths.params_file):
            return [gr.skip()] * len(PASTE_KEYS)
        with open(shared.paths.params_file, encoding="utf8") as file:
            text = file.read()
    skip = shared.opts.infotext_skip_pasting
    return [gr.skip() if value is None else value for value in fields_from_infotext(text, PASTE_KEYS, skip)]


def count_tokens(text: str, steps) -> str:
    """'N/75' (then N/150 ...) as A1111 shows beside the prompt boxes (prompt-syntax.md §9.3)."""
    from modules import conditioning, processing
    model = shared.model_holder.sd_model  # None: counts with the plain CLIP tokenizer
    if shared.opts.enable_prompt_comments:
        text = processing.strip_comments(text)
    count, limit = conditioning.token_count(model, text, int(steps or 20))
    return f"<span class='token-counter'>{count}/{limit}</span>"


def create() -> dict:
    """Build the tab; returns its input components by name (for Send to / paste wiring)."""
    with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
        with gr.Row():
            with gr.Column(scale=6):
                with gr.Row():
                    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt", scale=10,
                                        placeholder="Prompt (press Ctrl+Enter to generate)")
                    prompt_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                            elem_id="txt2img_token_counter", min_width=60)
                with gr.Row():
                    negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt",
                                          scale=10)
                    negative_tokens = gr.HTML("<span class='token-counter'>0/75</span>",
                                              elem_id="txt2img_negative_token_counter", min_width=60)
            with gr.Column(scale=1, min_width=160):
                generate_button = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
                interrupt_button = gr.Button("Interrupt", elem_id="txt2img_interrupt")
                # reads infotext from the prompt box, or the last generation's when the box is empty
                paste_button = gr.Button("Read parameters", elem_id="txt2img_paste")
        selected_styles = styles_ui.create("txt2img", prompt, negative)
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    sampler = gr.Dropdown(label="Sampling method", choices=sd_samplers.visible_sampler_names(),
                                          value="DPM++ 2M", elem_id="txt2img_sampling")
                    scheduler = gr.Dropdown(label="Schedule type", value="Automatic",
                                            choices=[s.label for s in sd_schedulers.schedulers],
                                            elem_id="txt2img_scheduler")
                steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
                with gr.Row():
                    width = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="txt2img_width")
                    height = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="txt2img_height")
                with gr.Row():
                    batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                            elem_id="txt2img_batch_count")
                    batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                           elem_id="txt2img_batch_size")
                cfg_scale = gr.Slider(1, 30, value=7, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=-1, precision=0, elem_id="txt2img_seed", scale=4)
                    random_seed = gr.Button("🎲", elem_id="txt2img_random_seed", scale=0, min_width=40)
                    reuse_seed = gr.Button("♻️", elem_id="txt2img_reuse_seed", scale=0, min_width=40)
            with gr.Column():
                gallery = gr.Gallery(label="Output", format="png", columns=4, elem_id="txt2img_gallery",
                                     buttons=["download", "fullscreen"], interactive=False)
                infotext = gr.Textbox(label="Generation parameters", interactive=False, lines=4,
                                      elem_id="txt2img_generation_info")
                notes = gr.HTML(elem_id="txt2img_html_log")
                infotexts = gr.State([])
                save_outputs.create_save_buttons(gallery, infotexts, "txt2img")

        inputs = [prompt, negative, selected_styles, sampler, scheduler, steps, cfg_scale, seed, width, height,
                  batch_count, batch_size]
        outputs = [gallery, infotext, notes, infotexts]
        # our own job queue orders the work, so Gradio need not serialise these events
        generate_button.click(generate, inputs=inputs, outputs=outputs, concurrency_limit=None, api_name="txt2img")
        prompt.submit(generate, inputs=inputs, outputs=outputs, concurrency_limit=None, api_visibility="private")
        interrupt_button.click(lambda: shared.state.interrupt(), queue=False, api_visibility="private")
        # counting never waits for the job queue, so it stays live while an image generates
        for box, counter in ((prompt, prompt_tokens), (negative, negative_tokens)):
            box.change(count_tokens, inputs=[box, steps], outputs=[counter], queue=False,
                       show_progress="hidden", trigger_mode="always_last", api_visibility="private")
        paste_fields = [prompt, negative, sampler, scheduler, steps, cfg_scale, seed, width, height]
        paste_button.click(paste_parameters, inputs=[prompt], outputs=paste_fields, queue=False,
                           api_visibility="private")
        random_seed.click(lambda: -1, outputs=[seed], queue=False, api_visibility="private")
        reuse_seed.click(_last_seed, inputs=[infotext], outputs=[seed], queue=False, api_visibility="private")
    return dict(zip(PASTE_KEYS, paste_fields))


def _last_seed(infotext: str):
    from modules.infotext_utils import parse_generation_parameters
    if not infotext:
        return -1
    return int(parse_generation_parameters(infotext).get("Seed", -1))
