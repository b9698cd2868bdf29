"""Pasting an infotext: `<lora:NAME:` re-resolved through `Lora hashes` (networks.md §6.2) and
AddNet fields turned into tags (§6.3)."""
from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

_re_lora_start = re.compile(r"<lora:([^:>]+):")
_re_addnet_model = re.compile(r"^AddNet Model (\d+)$")
_re_trailing_hash = re.compile(r"\([0-9a-fA-F]+\)$")


def parse_lora_hashes(text: str) -> dict[str, str]:
    """"a: 0123, b: 4567" -> {name: hash}; ValueError for a part without ':'."""
    table = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if ":" not in part:
            raise ValueError(f"'Lora hashes' entry {part.strip()!r} has no ':'")
        name, _, value = part.partition(":")
        table[name.strip()] = value.strip()
    return table


def apply_lora_hashes(params: dict, hash_lookup: dict, preferred_name: str = "Alias from file") -> None:
    """Rewrite `<lora:NAME:` in params["Prompt"] to the local file with that hash, if there is one."""
    text = params.get("Lora hashes")
    prompt = params.get("Prompt")
    if not text or not isinstance(prompt, str):
        return
    try:
        hashes = parse_lora_hashes(str(text))
    except ValueError as e:
        log.error("pasting Lora hashes: %s (prompt kept as it is)", e)
        return

    def local_name(match):
        wanted = hashes.get(match.group(1))
        entry = hash_lookup.get(wanted) if wanted else None
        if entry is None:
            return match.group(0)
        return f"<lora:{entry.get_alias(preferred_name)}:"

    params["Prompt"] = _re_lora_start.sub(local_name, prompt)


def apply_addnet(params: dict) -> None:
    """AddNet Model N / Module N / Weight A N -> `<lora:NAME:W>` tags after the prompt (§6.3)."""
    tags = []
    for key in list(params):
        match = _re_addnet_model.match(key)
        if not match:
            continue
        index = match.group(1)
        if params.get(f"AddNet Module {index}") != "LoRA":
            continue
        name = _re_trailing_hash.sub("", str(params[key]))
        weight = params.get(f"AddNet Weight A {index}", "1.0")
        tags.append(f"<lora:{name}:{weight}>")
    if tags:
        params["Prompt"] = f"{params.get('Prompt', '')}\n{''.join(tags)}"


def on_infotext_pasted(params: dict) -> None:
    from modules import shared
    from modules.networks import lora
    apply_addnet(params)
    apply_lora_hashes(params, lora.registry.available_network_hash_lookup,
                      getattr(shared.opts, "lora_preferred_name", "Alias from file"))
