"""HTML of the extra-networks cards (networks.md §8.2, §8.3): one card, the directory views
(`Dirs` buttons or a `Tree` of <details> folders), preview URLs. No UI toolkit here, so the panel
and the `/sd_extra_networks/get-single-card` route render the same markup.

Clicks write a small JSON action into the tab's hidden `<tabname>_extra_networks_action` box;
folder buttons and tree folders write their path into the page's search box.
"""
from __future__ import annotations

import html
import os
import urllib.parse

from modules.networks import card_metadata, cards

STYLE = """<style>
.extra-network-action { display: none !important; }
.extra-network-cards { display: flex; flex-wrap: wrap; gap: 0.5em; }
.extra-network-dirs { width: 100%; display: flex; flex-wrap: wrap; gap: 0.3em; margin-bottom: 0.3em; }
.extra-network-dirs button { border: 1px solid #888; border-radius: 4px; padding: 0 0.5em; }
.extra-network-tree { flex: 0 0 auto; overflow: auto; font-size: 0.9em; }
.extra-network-tree summary, .extra-network-tree .tree-file { cursor: pointer; white-space: nowrap; }
.extra-network-tree details > :not(summary) { margin-left: 1em; }
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

CARD_OF = "this.closest(`.extra-network-card`)"


def action_js(tabname: str, action: str, dataset: str) -> str:
    # `target`: the tab's last focused prompt box (TI cards go there, §8.4), kept by the panel's focus js
    return (f"const d={dataset}.dataset;const b=document.querySelector('#{tabname}_extra_networks_action textarea');"
            f"const f=(window.extraNetworksLastFocus||{{}})['{tabname}']||'prompt';"
            f"b.value=JSON.stringify({{action:'{action}',page:d.page,name:d.name,target:f,t:Date.now()}});"
            "b.dispatchEvent(new Event('input',{bubbles:true}));")


def search_js(tabname: str, page: str) -> str:
    return (f"const s=document.querySelector('#{tabname}_{page}_extra_search textarea, "
            f"#{tabname}_{page}_extra_search input');s.value=this.dataset.path;"
            "s.dispatchEvent(new Event('input',{bubbles:true}));")


def thumb_url(path: str) -> str:
    query = urllib.parse.urlencode({"filename": path, "mtime": int(os.path.getmtime(path))})
    return f"/sd_extra_networks/thumb?{query}"


def cover_url(page: str, name: str, index: int) -> str:
    return "/sd_extra_networks/cover-images?" + urllib.parse.urlencode({"page": page, "item": name, "index": index})


def preview_url(card, cover_index: int | None) -> str | None:
    """The preview file beside the network, else its `ssmd_cover_images` entry (Lora, §8.2)."""
    if card.preview:
        return thumb_url(card.preview)
    if cover_index is not None:
        return cover_url(card.page, card.name, cover_index)
    return None


def _size_style(opts) -> str:
    size = ""
    if opts.extra_networks_card_width:
        size += f"width:{int(opts.extra_networks_card_width)}px;"
    if opts.extra_networks_card_height:
        size += f"height:{int(opts.extra_networks_card_height)}px;"
    return size + f"font-size:{float(opts.extra_networks_card_text_scale) * 100:g}%;"


def card_html(tabname: str, card, opts, cover_index: int | None = None, has_metadata: bool = False) -> str:
    """One card: lazy preview, buttons (copy path; metadata when the file has some; edit), name and
    description (§8.2)."""
    name = html.escape(card.name, quote=True)
    url = preview_url(card, cover_index)
    image = f"<img src='{html.escape(url, quote=True)}' loading='lazy'>" if url else ""
    description = ""
    if opts.extra_networks_card_show_desc and card.description:
        text = card.description if opts.extra_networks_card_description_is_html else html.escape(card.description)
        description = f"<div class='card-description'>{text}</div>"
    buttons = []
    if card.filename:
        buttons.append(f"<span class='card-copy-path' title='Copy path' data-path='{html.escape(card.filename, quote=True)}' "
                       "onclick=\"event.stopPropagation();navigator.clipboard.writeText(this.dataset.path)\">📋</span>")
    if has_metadata:
        buttons.append(f"<span class='card-metadata' title='Show metadata' "
                       f"onclick=\"event.stopPropagation();{action_js(tabname, 'metadata', CARD_OF)}\">📄</span>")
    buttons.append(f"<span class='card-edit' title='Edit metadata' "
                   f"onclick=\"event.stopPropagation();{action_js(tabname, 'edit', CARD_OF)}\">🛠️</span>")
    return (f"<div class='extra-network-card' data-page='{card.page}' data-name='{name}' style='{_size_style(opts)}' "
            f"title='{html.escape(card.prompt_text, quote=True)}' onclick=\"{action_js(tabname, 'click', 'this')}\">"
            f"{image}<div class='card-buttons'>{''.join(buttons)}</div>"
            f"<div class='card-text'><div class='card-name'>{html.escape(card.name)}</div>{description}</div></div>")


def render_card(tabname: str, card, opts) -> str:
    """card_html with what the file's own metadata adds: the cover fallback of a Lora without a
    preview file and the metadata button."""
    metadata = cards.file_metadata(card)
    cover = card_metadata.first_cover_index(metadata) if card.page == "lora" and not card.preview else None
    return card_html(tabname, card, opts, cover, card_metadata.metadata_text(metadata) is not None)


def _folder_value(folder: str, opts) -> str:
    value = folder + os.sep
    return os.sep + value if opts.extra_networks_dir_button_function else value


def dirs_html(tabname: str, page: str, folders: list[str], opts) -> str:
    """`Dirs`: an "all" button, then one per sub-folder, each writing its path into the search box."""
    if not folders:
        return ""
    buttons = [f"<button data-path='' onclick=\"{search_js(tabname, page)}\">all</button>"]
    for folder in folders:
        buttons.append(f"<button data-path='{html.escape(_folder_value(folder, opts), quote=True)}' "
                       f"onclick=\"{search_js(tabname, page)}\">{html.escape(folder)}</button>")
    return f"<div class='extra-network-dirs'>{''.join(buttons)}</div>"


def build_tree(entries: list[tuple[str, str]]) -> dict:
    """{folder name: subtree} plus files under the key None: [(file name, card name), ...] for
    entries (relative path of the file, card name); folders are split on os.sep."""
    tree: dict = {}
    for relative, name in entries:
        parts = relative.split(os.sep)
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(None, []).append((parts[-1], name))
    return tree


def tree_html(tabname: str, page: str, entries: list[tuple[str, str]], opts, natural_key=str.lower) -> str:
    """`Tree`: collapsible <details> folders (natural order) before the files of each level (§8.3);
    clicking a folder searches for its path, clicking a file acts like clicking its card."""
    def render(node: dict, prefix: str) -> str:
        parts = []
        for folder in sorted((k for k in node if k is not None), key=natural_key):
            path = os.path.join(prefix, folder) if prefix else folder
            parts.append(f"<details class='tree-folder'><summary data-path='{html.escape(_folder_value(path, opts), quote=True)}' "
                         f"onclick=\"{search_js(tabname, page)}\">📁 {html.escape(folder)}</summary>"
                         f"{render(node[folder], path)}</details>")
        for file_name, name in node.get(None, []):
            parts.append(f"<div class='tree-file' data-page='{page}' data-name='{html.escape(name, quote=True)}' "
                         f"onclick=\"{action_js(tabname, 'click', 'this')}\">{html.escape(file_name)}</div>")
        return "".join(parts)

    width = int(getattr(opts, "extra_networks_tree_view_default_width", 0) or 0)
    style = f" style='width:{width}px'" if width else ""
    return f"<div class='extra-network-tree'{style}>{render(build_tree(entries), '')}</div>"
