"""The loaded LoRA set: resolving names, the file cache, refusing other families, matching keys
to layers and patching (networks.md §1.3, §2.7, §4). A1111's `networks` module names live here.
"""
from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from modules.networks import bundled, files, keymap, network_file, network_types, patching
from modules.networks.files import SdVersion  # noqa: F401 (A1111 name: network.SdVersion)

log = logging.getLogger(__name__)

registry = files.NetworkRegistry()
available_networks = registry.available_networks  # rebound by list_available_networks()
available_network_aliases = registry.available_network_aliases
available_network_hash_lookup = registry.available_network_hash_lookup
forbidden_network_aliases = registry.forbidden_network_aliases

patcher = patching.Patcher()
# parsed files kept between jobs: (path, sdxl key style) -> NetworkData, lora_in_memory_limit entries
_cache: "OrderedDict[tuple, network_file.NetworkData]" = OrderedDict()
# the files of the last non-empty set, kept through jobs without networks (Ours: A1111 drops its
# previous set at an empty activation and so reads the file again after every job without LoRA)
_last_used: list[network_file.NetworkData] = []


@dataclass
class LoadedNetwork:
    """One network of the active set (A1111's network.Network fields)."""
    name: str                  # the name as written in the prompt
    on_disk: files.NetworkOnDisk
    data: network_file.NetworkData
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None
    modules: dict = field(default_factory=dict)   # matched kohya names -> Target
    unmatched: list = field(default_factory=list)  # file module names that match no layer
    mentioned_name: str = ""

    @property
    def key(self):
        return self.data.key


loaded_networks: list[LoadedNetwork] = []
_keyed_models: "weakref.WeakSet" = weakref.WeakSet()  # models whose network_cond_key we set


def lora_folders() -> list[str]:
    from modules import shared
    args = shared.cmd_opts
    first = getattr(args, "lora_dir", None) or os.path.join(shared.paths.models, "Lora")
    folders = [first]
    extra = getattr(args, "lyco_dir_backcompat", None)
    if extra:
        folders.append(extra)
    return folders


def list_available_networks() -> None:
    global available_networks, available_network_aliases, available_network_hash_lookup, forbidden_network_aliases
    from modules import shared
    registry.list_networks(lora_folders(), shared.hash_cache, getattr(shared.opts, "list_hidden_files", True))
    available_networks = registry.available_networks
    available_network_aliases = registry.available_network_aliases
    available_network_hash_lookup = registry.available_network_hash_lookup
    forbidden_network_aliases = registry.forbidden_network_aliases


def model_version(model) -> str:
    family = getattr(model, "family", "")
    if family.startswith("sdxl"):
        return SdVersion.SDXL
    if family.startswith("sd2"):
        return SdVersion.SD2
    if family.startswith("sd1"):
        return SdVersion.SD1
    return SdVersion.Unknown


def _read(on_disk: files.NetworkOnDisk, sdxl: bool, memory_limit: int) -> network_file.NetworkData:
    """The parsed file: from the last set used, the memory cache, or the disk. A file whose mtime
    or size changed since it was read is read again."""
    stamp = network_file.file_stamp(on_disk.filename)
    for data in _last_used:
        if data.filename == on_disk.filename and data.sdxl_text_names == sdxl and data.stamp == stamp:
            return data
    cache_key = (on_disk.filename, sdxl)
    data = _cache.get(cache_key)
    if data is not None and data.stamp == stamp:
        _cache.move_to_end(cache_key)
        return data
    data = network_file.load_network_file(on_disk.filename, on_disk.name, sdxl_text_names=sdxl)
    if memory_limit > 0:
        _cache[cache_key] = data
        _cache.move_to_end(cache_key)
    return data


def _match(data: network_file.NetworkData, model, table: dict) -> tuple[dict, list]:
    """({module name: Target}, [unmatched module names]) of a file on a model, worked out once per
    (file content, model): the table is the model's own (keymap caches it per UNet)."""
    cached = data.matches.get(model.unet)
    if cached is not None and cached[0] is table:
        return cached[1], cached[2]
    modules, unmatched = {}, []
    for module_name, parts in data.groups.items():
        target = table.get(module_name)
        if target is None:
            unmatched.append(module_name)
            continue
        modules[module_name] = target
        if module_name not in data.prepared:
            data.prepared[module_name] = network_types.Prepared(parts)
    data.matches[model.unet] = (table, modules, unmatched)
    return modules, unmatched


def purge_cache(limit: int) -> None:
    while len(_cache) > max(limit, 0):
        _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every parsed file and computed delta (the next activation reads from disk)."""
    global _last_used
    _cache.clear()
    _last_used = []
    patcher.deltas.clear()


@dataclass
class ActivationReport:
    not_found: list = field(default_factory=list)
    failed_to_load: list = field(default_factory=list)   # "name (reason)"
    refused: list = field(default_factory=list)          # "name (SDXL network, SD1 model)"
    unmatched: dict = field(default_factory=dict)        # name -> [module names]
    errors: dict = field(default_factory=dict)           # name -> failed layer count
    bundled_shadowed: list = field(default_factory=list)  # "emb (in name)": an embeddings file wins
    networks: list = field(default_factory=list)         # LoadedNetwork, applied


def _resolve(names: list[str]) -> dict[str, files.NetworkOnDisk]:
    found = {name: registry.find(name) for name in names}
    if any(v is None for v in found.values()):
        list_available_networks()  # at most one re-listing per activation (§10.3 #8)
        found = {name: registry.find(name) for name in names}
    return found


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None, model=None) -> ActivationReport:
    """Make exactly these networks active on `model` (the loaded one by default); an empty list
    restores every patched layer. Returns what could not be applied, for comments."""
    global loaded_networks, _last_used
    from modules import shared
    if model is None:
        model = shared.model_holder.sd_model if shared.model_holder is not None else None
    report = ActivationReport()
    count = len(names)
    te_multipliers = list(te_multipliers or [1.0] * count)
    unet_multipliers = list(unet_multipliers or te_multipliers)
    dyn_dims = list(dyn_dims or [None] * count)
    if model is None:
        patcher.restore_all()
        loaded_networks = []
        for other in list(_keyed_models):
            _unkey(other)
        return report

    found = _resolve(list(names)) if names else {}
    sdxl = keymap.is_sdxl_model(model)
    table = keymap.module_table(model)
    limit = int(getattr(shared.opts, "lora_in_memory_limit", 0) or 0)
    version = model_version(model)
    new_set: list[LoadedNetwork] = []
    for i, name in enumerate(names):
        on_disk = found.get(name)
        if on_disk is None:
            report.not_found.append(name)
            continue
        try:
            data = _read(on_disk, sdxl, limit)
        except (network_file.NetworkLoadError, OSError) as e:
            log.error("Lora failed to load: %s", e)
            report.failed_to_load.append(f"{name} ({e})")
            continue
        if not shared.cmd_opts.no_hashing:
            on_disk.read_hash()
            registry.note_hash(on_disk)
        if data.sd_version != SdVersion.Unknown and version != SdVersion.Unknown and data.sd_version != version:
            report.refused.append(f"{name} ({data.sd_version} network, {version} model)")
            continue
        modules, unmatched = _match(data, model, table)
        net = LoadedNetwork(name=name, on_disk=on_disk, data=data, te_multiplier=float(te_multipliers[i]),
                            unet_multiplier=float(unet_multipliers[i]), dyn_dim=dyn_dims[i],
                            modules=dict(modules), unmatched=list(unmatched), mentioned_name=name)
        if net.unmatched:
            log.info("Lora %s: %d keys match no layer of the model: %s", name, len(net.unmatched),
                     ", ".join(net.unmatched))
            report.unmatched[name] = list(net.unmatched)
        new_set.append(net)
    # A name given twice is the same network twice, both with the last tag's multipliers (§4.1)
    last = {}
    for net in new_set:
        last[net.on_disk.filename, net.name] = net
    for net in new_set:
        final = last[net.on_disk.filename, net.name]
        net.te_multiplier, net.unet_multiplier, net.dyn_dim = final.te_multiplier, final.unet_multiplier, final.dyn_dim

    wanted: dict[int, tuple] = {}
    for net in new_set:
        for module_name, target in net.modules.items():
            multiplier = net.te_multiplier if target.is_te else net.unet_multiplier
            patch = patching.LayerPatch(net.name, net.key, net.data.prepared[module_name], multiplier,
                                        net.dyn_dim, module_name)
            wanted.setdefault(id(target.module), (target.module, []))[1].append(patch)
    functional = bool(getattr(shared.opts, "lora_functional", False))
    patcher.apply(wanted, functional=functional)
    report.errors = dict(patcher.failures)
    report.networks = new_set
    loaded_networks = new_set
    if new_set:
        _last_used = list({id(n.data): n.data for n in new_set}.values())
    # the patcher restored every layer not wanted here, other models' included: their conds are plain
    for other in list(_keyed_models):
        if other is not model:
            _unkey(other)
    report.bundled_shadowed = _bundle_embeddings(model, new_set)
    model.network_cond_key = tuple((n.key, n.te_multiplier, n.dyn_dim, functional) for n in new_set
                                   if n.data.bundled_embeddings or any(t.is_te for t in n.modules.values()))
    _keyed_models.add(model)
    purge_cache(limit)
    return report


def _bundle_embeddings(model, nets: list[LoadedNetwork]) -> list[str]:
    """The model's embeddings become the folders' plus those bundled in the active set (a later
    network's embedding of the same name replaces an earlier one's)."""
    by_name, origin = {}, {}
    for net in nets:
        for embedding in bundled.embeddings_of(net.data.bundled_embeddings, net.data.filename, net.name):
            by_name[embedding.name] = embedding
            origin[embedding.name] = net.name
    shadowed = bundled.point_model_at(model, list(by_name.values()))
    return [f"{name} (in {origin[name]})" for name in shadowed]


def _unkey(model) -> None:
    """A model with no network active: plain conds, the folders' embeddings only."""
    model.network_cond_key = ()
    if getattr(model, "embedding_db", None) is not None:
        bundled.point_model_at(model, [])


def reapply(model) -> ActivationReport:
    """The active set, with its multipliers, moved onto `model` (a refiner or hires checkpoint that
    took over part-way); the previous model's layers are restored."""
    nets = list(loaded_networks)
    return load_networks([n.name for n in nets], [n.te_multiplier for n in nets],
                         [n.unet_multiplier for n in nets], [n.dyn_dim for n in nets], model=model)


def restore_all() -> None:
    """Every patched layer back to its original weights; no network active."""
    global loaded_networks
    patcher.restore_all()
    loaded_networks = []
    from modules import shared
    model = shared.model_holder.sd_model if shared.model_holder is not None else None
    for other in list(_keyed_models) + ([model] if model is not None else []):
        _unkey(other)
