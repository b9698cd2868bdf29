"""What the extra-networks panel shows and does, without any UI toolkit (networks.md §8):
the items of each page, previews, descriptions, search and sort, the text a click inserts or
removes, and the user metadata `<stem>.json` beside a file."""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

from modules import extra_networks

log = logging.getLogger(__name__)

PAGES = ("textual_inversion", "hypernetworks", "checkpoints", "lora")
PAGE_TITLES = {"textual_inversion": "Textual Inversion", "hypernetworks": "Hypernetworks",
               "checkpoints": "Checkpoints", "lora": "Lora"}
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
SORT_FIELDS = ("Path", "Name", "Date Created", "Date Modified")


@dataclass
class Card:
    page: str
    name: str                 # what the card shows and the action refers to
    filename: str | None
    root: str | None = None   # folder the file was found under (relative paths, folder buttons)
    prompt_text: str = ""     # inserted into the prompt on click
    negative_text: str = ""   # toggled as (TEXT:1) in the negative prompt
    description: str = ""
    preview: str | None = None
    search_terms: list = field(default_factory=list)
    order: int = 0
    hidden_folder: bool = False
    user_metadata: dict = field(default_factory=dict)

    @property
    def relative_dir(self) -> str:
        if not self.filename or not self.root:
            return ""
        return os.path.dirname(os.path.relpath(self.filename, self.root))

    def sort_key(self, field_name: str):
        if field_name == "Name":
            return os.path.basename(self.filename or self.name).lower()
        if self.filename and os.path.exists(self.filename) and field_name in ("Date Created", "Date Modified"):
            stat = os.stat(self.filename)
            return stat.st_ctime if field_name == "Date Created" else stat.st_mtime
        return self.order


def preview_candidates(filename: str, samples_format: str = "png") -> list[str]:
    """Where a file's preview may be, in lookup order (§8.2): per extension in PREVIEW_EXTENSIONS
    then `samples_format`, `<stem>.<ext>` before `<stem>.preview.<ext>`."""
    stem = os.path.splitext(filename)[0]
    extra = (samples_format or "png").lower().lstrip(".")
    extensions = list(PREVIEW_EXTENSIONS) + ([extra] if extra not in PREVIEW_EXTENSIONS else [])
    return [path for ext in extensions for path in (f"{stem}.{ext}", f"{stem}.preview.{ext}")]


def find_preview(filename: str | None, samples_format: str = "png") -> str | None:
    if not filename:
        return None
    for candidate in preview_candidates(filename, samples_format):
        if os.path.isfile(candidate):
            return candidate
    return None


def find_description(filename: str | None, user_metadata: dict) -> str:
    if user_metadata.get("description"):
        return str(user_metadata["description"])
    if not filename:
        return ""
    stem = os.path.splitext(filename)[0]
    for candidate in (f"{stem}.txt", f"{stem}.description.txt"):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf8", errors="replace") as file:
                return file.read()
    return ""


def _is_hidden(path: str | None, root: str | None) -> bool:
    if not path or not root:
        return False
    return any(part.startswith(".") for part in os.path.relpath(path, root).split(os.sep)[:-1])


def _card(page, name, filename, root, order, prompt_text, opts, negative_text="", extra_terms=()):
    user = extra_networks.get_user_metadata(filename)
    relative = os.path.relpath(filename, os.path.dirname(root)) if filename and root else (filename or name)
    return Card(page=page, name=name, filename=filename, root=root, prompt_text=prompt_text,
                negative_text=negative_text, description=find_description(filename, user),
                preview=find_preview(filename, getattr(opts, "samples_format", "png")),
                search_terms=[relative, *extra_terms], order=order, hidden_folder=_is_hidden(filename, root),
                user_metadata=user)


def _multiplier_text(value) -> str:
    return f"{float(value):g}"


def lora_cards(opts, model=None) -> list["Card"]:
    from modules.networks import lora
    cards = []
    model_version = lora.model_version(model) if model is not None else None
    for order, entry in enumerate(lora.registry.available_networks.values()):
        user = extra_networks.get_user_metadata(entry.filename)
        version = user.get("sd version") or entry.sd_version
        if model_version is not None and not opts.lora_show_all:
            if version == "Unknown":
                if model_version in (opts.lora_hide_unknown_for_versions or []):
                    continue
            elif version != model_version:
                continue
        weight = user.get("preferred weight") or opts.extra_networks_default_multiplier
        text = f"<lora:{entry.get_alias(opts.lora_preferred_name)}:{_multiplier_text(weight)}>"
        if user.get("activation text"):
            text += " " + str(user["activation text"])
        terms = [entry.hash] if entry.hash else []
        cards.append(_card("lora", entry.name, entry.filename, entry.root, order, text, opts,
                           str(user.get("negative text") or ""), terms))
    return cards


def hypernetwork_cards(opts) -> list["Card"]:
    from modules.networks import hypernetworks
    folder = hypernetworks.hypernetwork_folder()
    default = _multiplier_text(opts.extra_networks_default_multiplier)
    return [_card("hypernetworks", name, path, folder, order, f"<hypernet:{name}:{default}>", opts)
            for order, (name, path) in enumerate(hypernetworks.hypernetworks.items())]


def embedding_cards(opts) -> list["Card"]:
    from modules import shared
    db = shared.embedding_db
    if db is None:
        return []
    root = shared.paths.embeddings
    return [_card("textual_inversion", name, e.filename, root, order, name, opts)
            for order, (name, e) in enumerate(db.word_embeddings.items())]


def checkpoint_cards(opts) -> list["Card"]:
    from modules import sd_models, shared
    cards = []
    for order, info in enumerate(sorted(sd_models.checkpoints_list.values(), key=lambda i: i.title.lower())):
        root = shared.paths.checkpoints if info.filename.startswith(os.path.abspath(shared.paths.checkpoints)) \
            else shared.cmd_opts.ckpt_dir
        card = _card("checkpoints", info.title, info.filename, root, order, info.title, opts)
        cards.append(card)
    return cards


def page_cards(page: str, opts, model=None) -> list[Card]:
    if page == "lora":
        return lora_cards(opts, model)
    if page == "hypernetworks":
        return hypernetwork_cards(opts)
    if page == "textual_inversion":
        return embedding_cards(opts)
    if page == "checkpoints":
        return checkpoint_cards(opts)
    raise ValueError(f"unknown extra networks page {page!r}")


def page_folders(page: str) -> list[str]:
    from modules import shared
    if page == "lora":
        from modules.networks import lora
        return lora.lora_folders()
    if page == "hypernetworks":
        from modules.networks import hypernetworks
        return [hypernetworks.hypernetwork_folder()]
    if page == "textual_inversion":
        return [shared.paths.embeddings]
    return [f for f in (shared.paths.checkpoints, shared.cmd_opts.ckpt_dir) if f]


def find_card(page: str, name: str, opts, model=None) -> Card | None:
    """The card `name` of `page` as the panel lists it now; None when it is not listed.
    ValueError for a page that does not exist."""
    for card in page_cards(page, opts, model):
        if card.name == name:
            return card
    return None


def file_metadata(card: Card) -> dict:
    """The network file's own metadata (Lora and checkpoint safetensors headers); {} otherwise."""
    if card.page == "lora":
        from modules.networks import lora
        entry = lora.registry.available_networks.get(card.name)
        return dict(entry.metadata) if entry is not None else {}
    if card.page == "checkpoints":
        from modules import sd_models
        info = sd_models.checkpoints_list.get(card.name)
        return dict(getattr(info, "metadata", None) or {})
    return {}


def filter_and_sort(cards: list[Card], search: str, sort_field: str, descending: bool,
                    hidden_models: str = "When searched") -> list[Card]:
    needle = (search or "").strip().lower()
    shown = []
    for card in cards:
        if card.hidden_folder and (hidden_models == "Never" or (hidden_models == "When searched" and len(needle) < 4)):
            continue
        haystack = " ".join([card.name, card.description, *map(str, card.search_terms)]).lower()
        if needle and needle not in haystack:
            continue
        shown.append(card)
    field_name = sort_field if sort_field in SORT_FIELDS else "Path"
    return sorted(shown, key=lambda c: c.sort_key(field_name), reverse=bool(descending))


# ------------------------------------------------------------------------------------- clicking

def _tag_pattern(text: str):
    """The `<kind:name:NUMBER>` of a card's text, as a pattern for any number (None for plain text)."""
    match = re.match(r"<([^:>]+):([^:>]+):[^>]*>", text)
    if not match:
        return None
    return re.escape(f"<{match.group(1)}:{match.group(2)}:") + r"[\d.]+>"


def toggle_text(prompt: str, text: str, separator: str = " ") -> str:
    """Click on a card: remove its tag (any positive weight, with the activation text right after
    it and the separator right before) if the prompt has it, else append it (§8.4)."""
    prompt = prompt or ""
    pattern = _tag_pattern(text)
    if pattern is not None:
        after = text[text.index(">") + 1:]  # the activation text that came with the tag
        full = re.compile(f"(?:{re.escape(separator)})?{pattern}(?:{re.escape(after)})?" if separator else
                          f"{pattern}(?:{re.escape(after)})?")
        if re.search(pattern, prompt):
            return full.sub("", prompt)
    elif text and re.search(rf"(?<!\w){re.escape(text)}(?!\w)", prompt):
        return re.sub(rf"(?:{re.escape(separator)})?(?<!\w){re.escape(text)}(?!\w)", "", prompt, count=1)
    if not prompt:
        return text
    return prompt + separator + text


def toggle_negative(negative: str, negative_text: str, separator: str = " ") -> str:
    if not negative_text:
        return negative
    wrapped = f"({negative_text}:1)"
    if wrapped in (negative or ""):
        return (negative or "").replace(separator + wrapped, "").replace(wrapped, "")
    return wrapped if not negative else negative + separator + wrapped


# ------------------------------------------------------------------------------------- user metadata

def save_user_metadata(filename: str, values: dict) -> str:
    """Merge values into `<stem>.json` beside the file (unknown keys kept); returns its path."""
    path = os.path.splitext(filename)[0] + ".json"
    current = extra_networks.get_user_metadata(filename)
    current.update(values)
    with open(path, "w", encoding="utf8") as file:
        json.dump(current, file, indent=4, ensure_ascii=False)
    return path
