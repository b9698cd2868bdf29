"""The extra-networks panel of a generation tab (networks.md §8): pages Textual Inversion,
Hypernetworks, Checkpoints and Lora with cards (previews, search, sort, folder buttons, refresh);
clicking a card inserts or removes its tag in the tab's prompt, a checkpoint card loads that
model, and the edit dialog saves the user metadata `<stem>.json`.

    extra_networks_panel.create("txt2img", prompt_box, negative_prompt_box)

Cards are HTML; a click writes a small JSON action into a hidden textbox of the tab, whose input
event runs the Python side, so the prompt logic lives in modules.networks.cards.
"""
from __future__ import annotations

import html
import json
import os
import time
import urllib.parse

import gradio as gr

from modules import shared
from modules.networks import cards as cards_mod

STYLE = """<style>
.extra-network-action { display: none !important; }
.extra-network-cards { display: flex; flex-wrap: wrap; gap: 0.5em; }
.extra-network-dirs { width: 100%; display: flex; flex-wrap: wrap; gap: 0.3em; margin-bottom: 0.3em; }
.extra-network-dirs button { border: 1px solid #888; border-radius: 4px; padding: 0 0.5em; }
.extra-network-card { position: relative; width: 10em; height: 13em; border-radius: 6px; overflow: hidden;
  cursor: pointer; background: #444 center / cover no-repeat; color: white; }
.extra-network-card img { width: 100%; height: 100%; object-fit: cover; position: absolute; }
.extra-network-card .card-text { position: absolute; bottom: 0; width: 100%; padding: 0.3em;
  background: rgba(0,0,0,0.6); }
.extra-network-card .card-name { font-weight: bold; word-break: break-all; }
.extra-network-card .card-description { font-size: 0.8em; max-height: 4em; overflow: hidden; }
.extra-network-card .card-buttons { position: absolute; top: 0.2em; right: 0.3em; display: flex; gap: 0.3em; }
.extra-network-card .card-buttons span { background: rgba(0,0,0,0.5); border-radius: 3px; padding: 0 0.2em; }
</style>"""


def _action_js(tabname: str, action: str, dataset: str) -> str:
    # `target`: the tab's last focused prompt box (TI cards go there, §8.4), kept by _focus_js
    return (f"const d={dataset}.dataset;const b=document.querySelector('#{tabname}_extra_networks_action textarea');"
            f"const f=(window.extraNetworksLastFocus||{{}})['{tabname}']||'prompt';"
            f"b.value=JSON.stringify({{action:'{action}',page:d.page,name:d.name,target:f,t:Date.now()}});"
            "b.dispatchEvent(new Event('input',{bubbles:true}));")


def _focus_js(tabname: str, box: str) -> str:
    return (f"() => {{ window.extraNetworksLastFocus = window.extraNetworksLastFocus || {{}}; "
            f"window.extraNetworksLastFocus['{tabname}'] = '{box}'; }}")


def _search_js(tabname: str, page: str) -> str:
    return (f"const s=document.querySelector('#{tabname}_{page}_extra_search textarea, "
            f"#{tabname}_{page}_extra_search input');s.value=this.dataset.path;"
            "s.dispatchEvent(new Event('input',{bubbles:true}));")


def thumb_url(path: str) -> str:
    query = urllib.parse.urlencode({"filename": path, "mtime": int(os.path.getmtime(path))})
    return f"/sd_extra_networks/thumb?{query}"


def render_cards(tabname: str, page: str, search: str = "", sort_field: str = "Path", descending: bool = False) -> str:
    opts = shared.opts
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    items = cards_mod.page_cards(page, opts, model)
    shown = cards_mod.filter_and_sort(items, search, sort_field, descending, opts.extra_networks_hidden_models)
    dirs = sorted({c.relative_dir for c in items if c.relative_dir and
                   (opts.extra_networks_show_hidden_directories or not c.hidden_folder)})
    parts = [STYLE, f"<div class='extra-network-cards' id='{tabname}_{page}_cards_html'>"]
    if dirs:
        buttons = [f"<button data-path='' onclick=\"{_search_js(tabname, page)}\">all</button>"]
        for folder in dirs:
            value = folder + os.sep
            if opts.extra_networks_dir_button_function:
                value = os.sep + value
            buttons.append(f"<button data-path='{html.escape(value, quote=True)}' "
                           f"onclick=\"{_search_js(tabname, page)}\">{html.escape(folder)}</button>")
        parts.append(f"<div class='extra-network-dirs'>{''.join(buttons)}</div>")
    if not shown:
        folders = ", ".join(cards_mod.page_folders(page))
        parts.append(f"<div class='extra-network-empty'>Nothing here. Add files to: {html.escape(folders)}</div>")
    size = ""
    if opts.extra_networks_card_width:
        size += f"width:{int(opts.extra_networks_card_width)}px;"
    if opts.extra_networks_card_height:
        size += f"height:{int(opts.extra_networks_card_height)}px;"
    size += f"font-size:{float(opts.extra_networks_card_text_scale) * 100:g}%;"
    for card in shown:
        name = html.escape(card.name, quote=True)
        image = f"<img src='{html.escape(thumb_url(card.preview), quote=True)}' loading='lazy'>" if card.preview else ""
        description = ""
        if opts.extra_networks_card_show_desc and card.description:
            text = card.description if opts.extra_networks_card_description_is_html else html.escape(card.description)
            description = f"<div class='card-description'>{text}</div>"
        parts.append(
            f"<div class='extra-network-card' data-page='{page}' data-name='{name}' style='{size}' "
            f"title='{html.escape(card.prompt_text, quote=True)}' onclick=\"{_action_js(tabname, 'click', 'this')}\">"
            f"{image}<div class='card-buttons'>"
            f"<span class='card-edit' title='Edit metadata' "
            f"onclick=\"event.stopPropagation();{_action_js(tabname, 'edit', 'this.closest(`.extra-network-card`)')}\">"
            f"🛠️</span></div>"
            f"<div class='card-text'><div class='card-name'>{html.escape(card.name)}</div>{description}</div></div>")
    parts.append("</div>")
    return "".join(parts)


def _find_card(page: str, name: str):
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    for card in cards_mod.page_cards(page, shared.opts, model):
        if card.name == name:
            return card
    return None


def _file_table(card) -> str:
    if not card.filename or not os.path.exists(card.filename):
        return ""
    stat = os.stat(card.filename)
    rows = [("File", os.path.relpath(card.filename, os.path.dirname(card.root)) if card.root else card.filename),
            ("Size", f"{stat.st_size / 1024 / 1024:.2f} MB"),
            ("Modified", time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime)))]
    if card.page == "lora":
        from modules.networks import lora
        entry = lora.registry.available_networks.get(card.name)
        if entry is not None:
            rows.append(("Hash", entry.shorthash or ""))
            meta = entry.metadata
            for label, key in (("Output name", "ss_output_name"), ("Model", "ss_sd_model_name"),
                               ("Clip skip", "ss_clip_skip"), ("Network module", "ss_network_module")):
                if key in meta:
                    rows.append((label, str(meta[key])))
            started = meta.get("ss_training_started_at")
            try:
                rows.append(("Training started", time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(started)))))
            except (TypeError, ValueError):
                pass
            tags = {}
            frequency = meta.get("ss_tag_frequency")
            if isinstance(frequency, dict):
                for dataset in frequency.values():
                    if isinstance(dataset, dict):
                        for tag, count in dataset.items():
                            tags[tag] = tags.get(tag, 0) + int(count)
            if tags:
                top = sorted(tags.items(), key=lambda kv: -kv[1])[:24]
                rows.append(("Tags", ", ".join(f"{t} ({c})" for t, c in top)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='extra-network-file'>{body}</table>"


def create(tabname: str, prompt: gr.Textbox, negative_prompt: gr.Textbox) -> dict:
    """Build the panel under the current Blocks context; returns its components."""
    components = {}
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tabname}_extra_networks"):
        action = gr.Textbox(elem_id=f"{tabname}_extra_networks_action", elem_classes=["extra-network-action"],
                            show_label=False, container=False, lines=1)
        notice = gr.HTML(elem_id=f"{tabname}_extra_networks_notice")
        pages = {}
        with gr.Tabs(elem_id=f"{tabname}_extra_tabs"):
            for page in cards_mod.PAGES:
                with gr.Tab(cards_mod.PAGE_TITLES[page], elem_id=f"{tabname}_{page}_tab") as tab:
                    with gr.Row():
                        search = gr.Textbox(placeholder="Search", show_label=False, scale=6, lines=1,
                                            elem_id=f"{tabname}_{page}_extra_search")
                        sort = gr.Dropdown(choices=list(cards_mod.SORT_FIELDS), value=shared.opts.extra_networks_card_order_field
                                           if shared.opts.extra_networks_card_order_field in cards_mod.SORT_FIELDS else "Path",
                                           show_label=False, scale=2, elem_id=f"{tabname}_{page}_extra_sort")
                        descending = gr.Checkbox(label="Descending", value=shared.opts.extra_networks_card_order == "Descending",
                                                 scale=1, elem_id=f"{tabname}_{page}_extra_sort_dir")
                        refresh = gr.Button("Refresh", scale=1, elem_id=f"{tabname}_{page}_extra_refresh")
                    cards_html = gr.HTML(render_cards(tabname, page), elem_id=f"{tabname}_{page}_cards")
                pages[page] = (tab, search, sort, descending, refresh, cards_html)
        with gr.Group(visible=False, elem_id=f"{tabname}_extra_networks_edit") as editor:
            edit_title = gr.Markdown()
            edit_target = gr.State(None)
            edit_files = gr.HTML()
            edit_description = gr.Textbox(label="Description", lines=2, elem_id=f"{tabname}_extra_edit_description")
            with gr.Row():
                edit_version = gr.Dropdown(label="Stable Diffusion version", choices=["SD1", "SD2", "SDXL", "Unknown"],
                                           value="Unknown", elem_id=f"{tabname}_extra_edit_version")
                edit_weight = gr.Slider(0, 2, value=0, step=0.01, label="Preferred weight",
                                        elem_id=f"{tabname}_extra_edit_weight")
            edit_activation = gr.Textbox(label="Activation text", elem_id=f"{tabname}_extra_edit_activation")
            edit_negative = gr.Textbox(label="Negative prompt", elem_id=f"{tabname}_extra_edit_negative")
            edit_notes = gr.Textbox(label="Notes", lines=3, elem_id=f"{tabname}_extra_edit_notes")
            with gr.Row():
                edit_cancel = gr.Button("Cancel", elem_id=f"{tabname}_extra_edit_cancel")
                edit_save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_extra_edit_save")

    private = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    lora_fields = [edit_version, edit_weight, edit_activation, edit_negative]
    editor_outputs = [editor, edit_title, edit_target, edit_files, edit_description, edit_notes, *lora_fields]
    no_editor = [gr.update()] * len(editor_outputs)

    def on_action(text, prompt_text, negative_text):
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return [gr.update(), gr.update(), ""] + no_editor + [gr.update()] * len(selector)
        card = _find_card(str(data.get("page")), str(data.get("name")))
        if card is None:
            return [gr.update(), gr.update(), f"<div class='error'>{html.escape(str(data.get('name')))} is no longer "
                    f"listed; press Refresh</div>"] + no_editor + [gr.update()] * len(selector)
        if data.get("action") == "edit":
            user = card.user_metadata
            return [gr.update(), gr.update(), ""] + [
                gr.update(visible=True), f"### {card.name}", {"page": card.page, "filename": card.filename,
                                                                "name": card.name},
                _file_table(card), user.get("description", ""), user.get("notes", ""),
                gr.update(value=user.get("sd version", "Unknown"), visible=card.page == "lora"),
                gr.update(value=float(user.get("preferred weight", 0) or 0), visible=card.page == "lora"),
                gr.update(value=user.get("activation text", ""), visible=card.page == "lora"),
                gr.update(value=user.get("negative text", ""), visible=card.page == "lora")] + \
                [gr.update()] * len(selector)
        if card.page == "checkpoints":
            from modules.ui import quicksettings
            dropdown, message = quicksettings.switch_checkpoint(card.name)
            return [gr.update(), gr.update(), html.escape(message or "")] + no_editor + [dropdown] * len(selector)
        separator = shared.opts.extra_networks_add_text_separator
        if card.page == "textual_inversion" and data.get("target") == "negative":
            new_negative = cards_mod.toggle_text(negative_text, card.prompt_text, separator)
            return [gr.update(), new_negative, ""] + no_editor + [gr.update()] * len(selector)
        new_prompt = cards_mod.toggle_text(prompt_text, card.prompt_text, separator)
        new_negative = cards_mod.toggle_negative(negative_text, card.negative_text, separator)
        return [new_prompt, new_negative, ""] + no_editor + [gr.update()] * len(selector)

    # the quicksettings checkpoint dropdown follows a checkpoint-card click (it is built before the tabs)
    selector = _checkpoint_selector()
    action.change(on_action, inputs=[action, prompt, negative_prompt],
                 outputs=[prompt, negative_prompt, notice, *editor_outputs, *selector], **private)
    prompt.focus(None, js=_focus_js(tabname, "prompt"), **private)
    negative_prompt.focus(None, js=_focus_js(tabname, "negative"), **private)

    def save(target, description, notes, version, weight, activation, negative):
        if not target or not target.get("filename"):
            return gr.update(visible=False), ""
        values = {"description": description, "notes": notes}
        if target["page"] == "lora":
            values.update({"sd version": version, "preferred weight": float(weight), "activation text": activation,
                           "negative text": negative})
        try:
            path = cards_mod.save_user_metadata(target["filename"], values)
        except OSError as e:
            return gr.update(visible=True), f"<div class='error'>Could not save: {html.escape(str(e))}</div>"
        return gr.update(visible=False), f"Saved {html.escape(path)}"

    edit_save.click(save, inputs=[edit_target, edit_description, edit_notes, *lora_fields],
                    outputs=[editor, notice], **private)
    edit_cancel.click(lambda: gr.update(visible=False), outputs=[editor], **private)

    for page, (tab, search, sort, descending, refresh, cards_html) in pages.items():
        def rerender(s, f, d, page=page):
            return render_cards(tabname, page, s, f, d)

        def refresh_all(s, f, d, page=page):
            refresh_pages()
            return render_cards(tabname, page, s, f, d)

        inputs = [search, sort, descending]
        search.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        sort.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        descending.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        tab.select(rerender, inputs=inputs, outputs=[cards_html], **private)
        refresh.click(refresh_all, inputs=inputs, outputs=[cards_html], api_visibility="private")
    components.update(action=action, notice=notice, pages=pages, editor=editor)
    return components


def _checkpoint_selector() -> list:
    """[the quicksettings checkpoint dropdown] when it belongs to the Blocks being built, else []."""
    from gradio.context import get_blocks_context

    from modules.ui import quicksettings
    dropdown, blocks = quicksettings.checkpoint_dropdown, get_blocks_context()
    if dropdown is None or blocks is None or blocks.blocks.get(dropdown._id) is not dropdown:
        return []
    return [dropdown]


def refresh_pages() -> None:
    """Re-list every page's files (the refresh button re-lists all pages, §8.1)."""
    from modules import sd_models
    from modules.networks import hypernetworks, lora

    def rescan():
        lora.list_available_networks()
        hypernetworks.list_hypernetworks()
        sd_models.list_models()
        if shared.embedding_db is not None:
            model = shared.model_holder.sd_model if shared.model_holder is not None else None
            if model is not None:
                sd_models.refresh_embeddings(model, force=True)
            else:
                shared.embedding_db.load_textual_inversion_embeddings(None, force_reload=True)
    shared.job_queue.run(rescan, name="refresh-extra-networks")
