"""Extra-network tags `<kind:name:args>` in prompts (spec prompt-syntax.md §4) and the registry of
handlers (LoRA, hypernetworks, ...) that activate them for a batch.

Kept free of heavy imports: handlers bring their own.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict

log = logging.getLogger(__name__)

# NAME: word characters; ARGS: anything up to the closing `>`
re_extra_net = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    """Arguments of one tag: `items` split at `:`; a part with exactly one `=` is named, others
    are positional (`<lora:x:0.8:te=0.2>` -> positional ['x', '0.8'], named {'te': '0.2'})."""

    def __init__(self, items=None):
        self.items = items or []
        self.positional = []
        self.named = {}

        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other):
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    def __repr__(self):
        return f"ExtraNetworkParams(items={self.items!r})"


class ExtraNetwork:
    """Base class of a handler for one tag kind. Subclasses implement activate/deactivate."""

    def __init__(self, name):
        self.name = name

    def activate(self, p, params_list):
        """Called once per batch with every ExtraNetworkParams of this kind from the batch's first
        prompt (an empty list when the prompt mentions none, so the handler can reset itself)."""
        raise NotImplementedError

    def deactivate(self, p):
        """Called after the batch (or job) is done."""
        raise NotImplementedError


extra_network_registry: dict[str, ExtraNetwork] = {}
extra_network_aliases: dict[str, ExtraNetwork] = {}


def initialize():
    extra_network_registry.clear()
    extra_network_aliases.clear()


def register_extra_network(extra_network: ExtraNetwork):
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str):
    """Another tag name for a handler, e.g. the old `lyco` for the LoRA handler."""
    extra_network_aliases[alias] = extra_network


def parse_prompt(prompt: str):
    """Remove every tag from the prompt. Returns (prompt without tags, {kind: [ExtraNetworkParams]})."""
    res = defaultdict(list)

    def found(m):
        res[m.group(1)].append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    return re_extra_net.sub(found, prompt), res


def parse_prompts(prompts):
    """Remove tags from every prompt; the networks to activate come from the first prompt only
    (all prompts of a batch are assumed to share networks)."""
    res = []
    extra_data = None
    for prompt in prompts:
        updated_prompt, parsed_extra_data = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed_extra_data
        res.append(updated_prompt)
    return res, extra_data if extra_data is not None else defaultdict(list)


def lookup_extra_networks(extra_network_data):
    """Map tag kinds to handlers.

    Returns (known, unknown_kinds): known is {ExtraNetwork: [ExtraNetworkParams, ...]} in the order
    the kinds appear (a kind and its alias share one list); unknown_kinds lists kinds without a
    handler, so the caller can report them (job comment `Unknown network type: <name>`).
    """
    known: dict[ExtraNetwork, list[ExtraNetworkParams]] = {}
    unknown_kinds: list[str] = []
    for kind, params_list in extra_network_data.items():
        extra_network = extra_network_registry.get(kind)
        if extra_network is None:
            extra_network = extra_network_aliases.get(kind)
        if extra_network is None:
            unknown_kinds.append(kind)
            continue
        known.setdefault(extra_network, []).extend(params_list)
    return known, unknown_kinds


def _add_comment(p, text):
    comment = getattr(p, "comment", None)
    if callable(comment):
        comment(text)


def activate(p, extra_network_data):
    """Activate the handlers named in extra_network_data (in order), then every other registered
    handler with an empty list. Unknown kinds become a job comment and a log warning.

    A handler that raises is logged and skipped so one broken network does not fail the job.
    Returns the unknown kinds. (Calling the scripts' `after_extra_networks_activate` hook is left
    to the caller.)
    """
    known, unknown_kinds = lookup_extra_networks(extra_network_data)
    for kind in unknown_kinds:
        log.warning("Unknown network type: %s", kind)
        _add_comment(p, f"Unknown network type: {kind}")

    for extra_network, params_list in known.items():
        try:
            extra_network.activate(p, params_list)
        except Exception:
            log.exception("activating extra network %s with arguments %s", extra_network.name, params_list)

    for name, extra_network in extra_network_registry.items():
        if extra_network in known:
            continue
        try:
            extra_network.activate(p, [])
        except Exception:
            log.exception("activating extra network %s", name)

    return unknown_kinds


def deactivate(p, extra_network_data):
    """Deactivate the handlers named in extra_network_data, then every other registered handler."""
    known, _ = lookup_extra_networks(extra_network_data)
    handlers = list(known) + [n for n in extra_network_registry.values() if n not in known]
    for extra_network in handlers:
        try:
            extra_network.deactivate(p)
        except Exception:
            log.exception("deactivating extra network %s", extra_network.name)


def model_switched(model):
    """The job's model changed part-way (a refiner taking over, the hires checkpoint): every handler
    with a `model_switched(model)` method moves its active set onto the new model."""
    seen = set()
    for name, extra_network in extra_network_registry.items():
        handler = getattr(extra_network, "model_switched", None)
        if handler is None or id(extra_network) in seen:
            continue
        seen.add(id(extra_network))
        try:
            handler(model)
        except Exception:
            log.exception("moving extra network %s to the new model", name)


def get_user_metadata(filename, lister=None):
    """User metadata of a network file: the JSON file next to it with the same stem, or {}.

    `lister` (optional) is an object with `exists(path)`, used to avoid a filesystem hit per file.
    """
    if filename is None:
        return {}

    metadata_filename = os.path.splitext(filename)[0] + ".json"
    exists = lister.exists(metadata_filename) if lister is not None else os.path.exists(metadata_filename)
    if not exists:
        return {}

    try:
        with open(metadata_filename, "r", encoding="utf8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as e:
        log.warning("reading extra network user metadata from %s: %s", metadata_filename, e)
        return {}
    return metadata if isinstance(metadata, dict) else {}
