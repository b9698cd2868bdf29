"""The `lora` (and old `lyco`) tag handler: `<lora:NAME:TE:UNET:DYN>` with `te=`, `unet=`, `dyn=`
(prompt-syntax.md §4, networks.md §5), job comments, and the `Lora hashes` infotext (§6.1)."""
from __future__ import annotations

import logging

from modules import extra_networks
from modules.networks import lora

log = logging.getLogger(__name__)

MAX_NAMES_IN_COMMENT = 8


class TagError(ValueError):
    pass


def parse_lora_params(params: extra_networks.ExtraNetworkParams) -> tuple[str, float, float, int | None]:
    """(name, te, unet, dyn) of one tag; TagError for a bad number or a missing name."""
    positional, named = params.positional, params.named
    if not positional:
        raise TagError("no LoRA name")
    name = positional[0]

    def number(text, kind, what):
        try:
            return kind(text)
        except (TypeError, ValueError):
            raise TagError(f"{what} {text!r} is not a number") from None

    te = number(positional[1], float, "text encoder multiplier") if len(positional) > 1 else 1.0
    te = number(named["te"], float, "te") if "te" in named else te
    unet = number(positional[2], float, "UNet multiplier") if len(positional) > 2 else te
    unet = number(named["unet"], float, "unet") if "unet" in named else unet
    dyn = number(positional[3], int, "dyn") if len(positional) > 3 else None
    dyn = number(named["dyn"], int, "dyn") if "dyn" in named else dyn
    return name, te, unet, dyn


def _names_text(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_COMMENT])
    return shown + (f" and {len(names) - MAX_NAMES_IN_COMMENT} more" if len(names) > MAX_NAMES_IN_COMMENT else "")


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")
        self._in_batch = False  # a second activation before deactivate is the hires pass
        self._switch_reports = []  # (model title, report) of refiner / hires-checkpoint take-overs

    def activate(self, p, params_list):
        from modules import shared
        opts = shared.opts
        names, te, unet, dyn = [], [], [], []
        for params in params_list:
            try:
                name, t, u, d = parse_lora_params(params)
            except TagError as e:
                p.comment(f"Lora tag <lora:{':'.join(map(str, params.items))}> skipped: {e}")
                continue
            names.append(name)
            te.append(t)
            unet.append(u)
            dyn.append(d)
        sd_lora = getattr(opts, "sd_lora", "None")
        if sd_lora and sd_lora != "None" and sd_lora not in names and sd_lora in lora.registry.available_networks:
            multiplier = float(opts.extra_networks_default_multiplier)
            names.append(sd_lora)
            te.append(multiplier)
            unet.append(multiplier)
            dyn.append(None)
        for name in {n for n in names if names.count(n) > 1}:
            p.comment(f"Lora {name} is named more than once: applied that many times, each with the last tag's multipliers")

        report = lora.load_networks(names, te, unet, dyn)
        self._comment(p, report, opts)
        self._write_hashes(p, report, opts)
        self._in_batch = True

    def model_switched(self, model):
        """A refiner or hires checkpoint took over during the batch: the active set follows it."""
        if not self._in_batch or not lora.loaded_networks:
            return
        report = lora.reapply(model)
        self._switch_reports.append((model.sd_checkpoint_info.short_title, report))

    def _comment(self, p, report, opts, where=""):
        def say(text):  # the same messages for a model that took over, named after it
            p.comment(f"{text} (on {where})" if where else text)

        if report.not_found:
            text = f"Lora not found: {', '.join(report.not_found)}"
            say(text)
            if opts.lora_not_found_warning_console:
                print(text)
        for item in report.failed_to_load:
            say(f"Lora failed to load: {item}")
        if report.refused:
            say(f"Lora not applied, made for another model family: {', '.join(report.refused)}")
        for name, keys in report.unmatched.items():
            say(f"Lora {name}: {len(keys)} keys match no layer of the model: {_names_text(keys)}")
        if report.bundled_shadowed:
            say("Bundled embeddings skipped, the embeddings folder has the name: " + ", ".join(report.bundled_shadowed))
        if report.errors:
            say("Networks with errors: " + ", ".join(f"{n} ({c})" for n, c in report.errors.items()))

    def _write_hashes(self, p, report, opts):
        if not self._in_batch:
            p.extra_generation_params.pop("Lora hashes", None)  # restarted at each first-pass activation
        if not opts.lora_add_hashes_to_infotext:
            return
        known = {}
        existing = p.extra_generation_params.get("Lora hashes", "")
        for item in existing.split(", ") if existing else []:
            key, _, value = item.partition(": ")
            known[key] = value
        for net in report.networks:
            if net.on_disk.shorthash:
                known[net.name.replace(":", "").replace(",", "")] = net.on_disk.shorthash
        if known:
            p.extra_generation_params["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in known.items())

    def deactivate(self, p):
        from modules import shared
        reports, self._switch_reports = self._switch_reports, []
        for where, report in reports:
            self._comment(p, report, shared.opts, where)
        self._in_batch = False
        lora.restore_all()

