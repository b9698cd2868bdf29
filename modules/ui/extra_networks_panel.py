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

import gradio as gr

from modules import shared
from modules.networks import card_html as en_html
from modules.networks import card_metadata as data
from modules.networks import cards as cards_mod
from modules.ui import extra_networks_preview

DIRECTORY_VIEWS = ("Dirs", "Tree", "None")


def _focus_js(tabname: str, box: str) -> str:
    return (f"() => {{ window.extraNetworksLastFocus = window.extraNetworksLastFocus || {{}}; "
            f"window.extraNetworksLastFocus['{tabname}'] = '{box}'; }}")


def default_directory_view(opts) -> str:
    if not opts.extra_networks_tree_view_default_enabled:
        return "None"
    return opts.extra_networks_tree_view_style if opts.extra_networks_tree_view_style in DIRECTORY_VIEWS else "Dirs"


def _lora_entry(name: str):
    from modules.networks import lora
    return lora.registry.available_networks.get(name)


def _directory_html(tabname: str, page: str, items, opts, view: str) -> str:
    visible = [c for c in cards_mod.filter_and_sort(items, "", "Path", False, opts.extra_networks_hidden_models)
               if opts.extra_networks_show_hidden_directories or not c.hidden_folder]
    if view == "Tree":
        from modules.networks.files import natural_key
        entries = [(os.path.relpath(c.filename, c.root), c.name) for c in visible if c.filename and c.root]
        return en_html.tree_html(tabname, page, entries, opts, natural_key)
    if view == "Dirs":
        from modules.networks.files import natural_key
        folders = sorted({c.relative_dir for c in visible if c.relative_dir}, key=natural_key)
        return en_html.dirs_html(tabname, page, folders, opts)
    return ""


def render_cards(tabname: str, page: str, search: str = "", sort_field: str = "Path", descending: bool = False,
                 view: str = "Dirs") -> str:
    opts = shared.opts
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    items = cards_mod.page_cards(page, opts, model)
    shown = cards_mod.filter_and_sort(items, search, sort_field, descending, opts.extra_networks_hidden_models)
    directory = _directory_html(tabname, page, items, opts, view)
    parts = [directory if view == "Dirs" else ""]
    if not shown:
        folders = ", ".join(cards_mod.page_folders(page))
        parts.append(f"<div class='extra-network-empty'>Nothing here. Add files to: {html.escape(folders)}</div>")
    parts.extend(en_html.render_card(tabname, card, opts) for card in shown)
    body = f"<div class='extra-network-cards' id='{tabname}_{page}_cards_html'>{''.join(parts)}</div>"
    if view == "Tree" and directory:  # the tree beside the cards
        body = f"<div class='extra-network-browser' style='display:flex;gap:0.5em'>{directory}{body}</div>"
    return en_html.STYLE + body


def _find_card(page: str, name: str):
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    try:
        return cards_mod.find_card(page, name, shared.opts, model)
    except ValueError:  # a page name the panel does not have: same answer as an unlisted card
        return None


def _toggle_tag_js(tabname: str) -> str:
    """A training tag button adds its tag to the activation text, or removes it (§8.5)."""
    return (f"const a=document.querySelector('#{tabname}_extra_edit_activation textarea, "
            f"#{tabname}_extra_edit_activation input');const t=this.dataset.tag;"
            "let w=a.value.split(',').map(x=>x.trim()).filter(x=>x);"
            "w=w.includes(t)?w.filter(x=>x!==t):w.concat([t]);a.value=w.join(', ');"
            "a.dispatchEvent(new Event('input',{bubbles:true}));")


def _file_table(card, tabname: str) -> str:
    if not card.filename or not os.path.exists(card.filename):
        return ""
    stat = os.stat(card.filename)
    rows = [("File", os.path.relpath(card.filename, os.path.dirname(card.root)) if card.root else card.filename),
            ("Size", f"{stat.st_size / 1024 / 1024:.2f} MB"),
            ("Modified", time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime)))]
    tags = ""
    if card.page == "lora":
        entry = _lora_entry(card.name)
        if entry is not None:
            rows.append(("Hash", entry.shorthash or ""))
            info = data.training_info(entry.metadata)
            for label in ("output name", "model", "clip skip", "network module", "training date", "dataset size"):
                if label in info:
                    rows.append((label.capitalize(), info[label]))
            if "resolutions" in info:
                rows.append(("Resolutions", ", ".join(info["resolutions"])))
            if "tags" in info:
                tags = "<div class='extra-network-tags'>" + " ".join(
                    f"<button data-tag='{html.escape(t, quote=True)}' onclick=\"{_toggle_tag_js(tabname)}\">"
                    f"{html.escape(t)} ({c})</button>" for t, c in info["tags"]) + "</div>"
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='extra-network-file'>{body}</table>{tags}"


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
                        view = gr.Dropdown(choices=list(DIRECTORY_VIEWS), value=default_directory_view(shared.opts),
                                           show_label=False, scale=1, elem_id=f"{tabname}_{page}_extra_tree_view")
                        refresh = gr.Button("Refresh", scale=1, elem_id=f"{tabname}_{page}_extra_refresh")
                    cards_html = gr.HTML(render_cards(tabname, page, view=view.value), elem_id=f"{tabname}_{page}_cards")
                pages[page] = (tab, search, sort, descending, view, refresh, cards_html)
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
                edit_replace = gr.Button("Replace preview", elem_id=f"{tabname}_extra_edit_replace_preview")
                edit_save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_extra_edit_save")

    private = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    lora_fields = [edit_version, edit_weight, edit_activation, edit_negative]
    editor_outputs = [editor, edit_title, edit_target, edit_files, edit_description, edit_notes, *lora_fields]
    no_editor = [gr.update()] * len(editor_outputs)

    def on_action(text, prompt_text, negative_text):
        try:
            request = json.loads(text or "{}")
        except ValueError:
            return [gr.update(), gr.update(), ""] + no_editor + [gr.update()] * len(selector)
        card = _find_card(str(request.get("page")), str(request.get("name")))
        if card is None:
            return [gr.update(), gr.update(), f"<div class='error'>{html.escape(str(request.get('name')))} is no longer "
                    f"listed; press Refresh</div>"] + no_editor + [gr.update()] * len(selector)
        if request.get("action") == "metadata":
            text = data.metadata_text(cards_mod.file_metadata(card)) or "This file has no metadata."
            return [gr.update(), gr.update(), f"<pre class='extra-network-metadata'>{html.escape(text)}</pre>"] + \
                no_editor + [gr.update()] * len(selector)
        if request.get("action") == "edit":
            user = card.user_metadata
            return [gr.update(), gr.update(), ""] + [
                gr.update(visible=True), f"### {card.name}", {"page": card.page, "filename": card.filename,
                                                                "name": card.name},
                _file_table(card, tabname), user.get("description", ""), user.get("notes", ""),
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
        if card.page == "textual_inversion" and request.get("target") == "negative":
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

    for page, (tab, search, sort, descending, view, refresh, cards_html) in pages.items():
        def rerender(s, f, d, v, page=page):
            return render_cards(tabname, page, s, f, d, v)

        def refresh_all(s, f, d, v, page=page):
            refresh_pages()
            return render_cards(tabname, page, s, f, d, v)

        inputs = [search, sort, descending, view]
        view.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        search.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        sort.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        descending.change(rerender, inputs=inputs, outputs=[cards_html], **private)
        tab.select(rerender, inputs=inputs, outputs=[cards_html], **private)
        refresh.click(refresh_all, inputs=inputs, outputs=[cards_html], api_visibility="private")
    components.update(action=action, notice=notice, pages=pages, editor=editor, edit_target=edit_target,
                      edit_replace=edit_replace)
    return components


def connect_gallery(components: dict, gallery, infotexts, selected_index) -> None:
    """Wire the edit dialog's Replace preview to the tab's result gallery (built after the panel)."""
    def replace(target, gallery_value, texts, selected):
        if not target or not target.get("filename"):
            return "<div class='error'>Open a card's edit dialog first</div>"
        try:
            image, infotext = extra_networks_preview.selected_image(gallery_value, texts, selected)
            path = extra_networks_preview.save_preview(target["page"], target["filename"], image, infotext,
                                                       shared.opts.samples_format)
        except (ValueError, OSError) as e:
            return f"<div class='error'>{html.escape(str(e))}</div>"
        return f"Preview saved: {html.escape(path)}"

    components["edit_replace"].click(replace, inputs=[components["edit_target"], gallery, infotexts, selected_index],
                                     outputs=[components["notice"]], queue=False, api_visibility="private",
                                     show_progress="hidden")


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
