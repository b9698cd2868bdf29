"""Prompt styles in a generation tab: pick several, apply them into the prompt boxes, and create,
edit or delete styles (saved to the first styles file)."""
import html

import gradio as gr

from modules import styles


def _names() -> list[str]:
    return list(styles.get_database().styles)


def apply_to_prompt(prompt: str, negative: str, selected: list[str]):
    """Write the selected styles into the prompt boxes and clear the selection."""
    database = styles.get_database()
    return (database.apply_styles_to_prompt(prompt, selected or []),
            database.apply_negative_styles_to_prompt(negative, selected or []), [])


def load_style(name: str):
    style = styles.get_database().styles.get(name)
    if style is None:
        return gr.update(), gr.update()
    return style.prompt, style.negative_prompt


def save_style(name: str, prompt: str, negative: str):
    name = (name or "").strip()
    if not name:
        return gr.update(), "<div class='error'>Give the style a name first.</div>"
    database = styles.get_database()
    database.save_style(name, prompt, negative)
    return gr.update(choices=_names()), f"Saved style {html.escape(name)}."


def delete_style(name: str):
    database = styles.get_database()
    if name not in database.styles:
        return gr.update(), f"<div class='error'>There is no style named {html.escape(name or '')}.</div>"
    database.delete_style(name)
    return gr.update(choices=_names(), value=[]), f"Deleted style {html.escape(name)}."


def refresh():
    styles.get_database().reload()
    return gr.update(choices=_names())


def create(tabname: str, prompt: gr.Textbox, negative: gr.Textbox) -> gr.Dropdown:
    """The styles row; returns the multi-select dropdown whose value is the job's style list."""
    with gr.Row():
        selected = gr.Dropdown(label="Styles", choices=_names(), value=[], multiselect=True, allow_custom_value=True,
                               elem_id=f"{tabname}_styles", scale=6)
        apply_button = gr.Button("Apply styles to prompt", elem_id=f"{tabname}_style_apply", scale=1)
    with gr.Accordion("Edit styles", open=False, elem_id=f"{tabname}_styles_edit"):
        with gr.Row():
            name = gr.Dropdown(label="Style name", choices=_names(), allow_custom_value=True,
                               elem_id=f"{tabname}_edit_style_name", scale=4)
            refresh_button = gr.Button("Reload styles file", elem_id=f"{tabname}_styles_refresh", scale=1)
        style_prompt = gr.Textbox(label="Style prompt ({prompt} marks where the prompt goes)", lines=2,
                                  elem_id=f"{tabname}_edit_style_prompt")
        style_negative = gr.Textbox(label="Style negative prompt", lines=2,
                                    elem_id=f"{tabname}_edit_style_neg_prompt")
        with gr.Row():
            save_button = gr.Button("Save style", elem_id=f"{tabname}_edit_style_save")
            delete_button = gr.Button("Delete style", elem_id=f"{tabname}_edit_style_delete")
        message = gr.HTML(elem_id=f"{tabname}_edit_style_message")

    private = {"api_visibility": "private", "show_progress": "hidden"}
    apply_button.click(apply_to_prompt, inputs=[prompt, negative, selected],
                       outputs=[prompt, negative, selected], **private)
    name.change(load_style, inputs=[name], outputs=[style_prompt, style_negative], **private)
    save_button.click(save_style, inputs=[name, style_prompt, style_negative], outputs=[selected, message],
                      **private).then(lambda: gr.update(choices=_names()), outputs=[name], **private)
    delete_button.click(delete_style, inputs=[name], outputs=[selected, message], **private).then(
        lambda: gr.update(choices=_names(), value=None), outputs=[name], **private)
    refresh_button.click(refresh, outputs=[selected], **private).then(
        lambda: gr.update(choices=_names()), outputs=[name], **private)
    return selected
