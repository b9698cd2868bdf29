"""Hypernetworks (networks.md §7): A1111's `.pt` format, its MLP architecture, and the
`<hypernet:NAME:MULT>` tag, which runs the MLPs on the inputs of every UNet attention's to_k / to_v.

The MLPs enter through forward pre-hooks on the to_k / to_v layers, installed for the batch and
removed after it, so nothing of diffusers is replaced globally.
"""
from __future__ import annotations

import glob
import logging
import os

import torch

from modules import extra_networks

log = logging.getLogger(__name__)

DEFAULT_LAYER_STRUCTURE = [1, 2, 1]
_NAMED_ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "leakyrelu": torch.nn.LeakyReLU,
    "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish,  # A1111's table maps "swish" to Hardswish
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
}


class HypernetworkError(ValueError):
    pass


def activation_class(name):
    if name in (None, "linear", "None"):
        return None
    lowered = str(name).lower()
    if lowered in _NAMED_ACTIVATIONS:
        return _NAMED_ACTIVATIONS[lowered]
    for attr in dir(torch.nn.modules.activation):
        cls = getattr(torch.nn.modules.activation, attr)
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and attr.lower() == lowered:
            return cls
    raise HypernetworkError(f"unknown activation function {name!r}")


def dropout_for(layer_structure, use_dropout, last_layer_dropout, stored=None) -> list[float]:
    if stored is not None:
        return [float(x) for x in stored]
    length = len(layer_structure)
    if not use_dropout:
        return [0.0] * length
    return [0.0] + [0.3] * (length - 3) + [0.3 if last_layer_dropout else 0.0] + [0.0]


class HypernetworkModule(torch.nn.Module):
    """One MLP of width d: `x + multiplier * linear(x)`."""

    def __init__(self, dim, state_dict=None, layer_structure=None, activation_func=None, add_layer_norm=False,
                 activate_output=True, dropout_structure=None):
        super().__init__()
        structure = list(layer_structure or DEFAULT_LAYER_STRUCTURE)
        if structure[0] != 1 or structure[-1] != 1:
            raise HypernetworkError(f"layer structure {structure} must start and end with 1")
        dropout = list(dropout_structure or [0.0] * len(structure))
        activation = activation_class(activation_func)
        layers = []
        for i in range(len(structure) - 1):
            width_in, width_out = int(dim * structure[i]), int(dim * structure[i + 1])
            layers.append(torch.nn.Linear(width_in, width_out))
            last = i == len(structure) - 2
            if activation is not None and not (last and not activate_output):
                layers.append(activation())
            if add_layer_norm:
                layers.append(torch.nn.LayerNorm(width_out))
            if i + 1 < len(dropout) and dropout[i + 1] > 0:
                layers.append(torch.nn.Dropout(p=dropout[i + 1]))
        self.linear = torch.nn.Sequential(*layers)
        self.multiplier = 1.0
        if state_dict is not None:
            renamed = {_old_key(k): v for k, v in state_dict.items()}
            try:
                self.load_state_dict(renamed, strict=True)
            except RuntimeError as e:
                raise HypernetworkError(f"weights do not fit the layer structure {structure}: {e}") from None
        self.eval().requires_grad_(False)

    def forward(self, x):
        return x + self.linear(x) * self.multiplier


def _old_key(key: str) -> str:
    for old, new in (("linear1.", "linear.0."), ("linear2.", "linear.1.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key


class Hypernetwork:
    def __init__(self, name="", layer_structure=None, activation_func=None, add_layer_norm=False,
                 activate_output=True, use_dropout=False, last_layer_dropout=False, dropout_structure=None,
                 weight_initialization="Normal"):
        self.name = name
        self.filename = None
        self.layers: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = {}
        self.layer_structure = list(layer_structure or DEFAULT_LAYER_STRUCTURE)
        self.activation_func = activation_func
        self.add_layer_norm = bool(add_layer_norm)
        self.activate_output = bool(activate_output)
        self.use_dropout = bool(use_dropout)
        self.last_layer_dropout = bool(last_layer_dropout)
        self.dropout_structure = dropout_structure
        self.weight_initialization = weight_initialization
        self.step = 0
        self.sd_checkpoint = None
        self.sd_checkpoint_name = None
        self.optional_info = None
        self.multiplier = 1.0

    def _module(self, dim, state_dict=None):
        dropout = dropout_for(self.layer_structure, self.use_dropout, self.last_layer_dropout, self.dropout_structure)
        return HypernetworkModule(dim, state_dict, self.layer_structure, self.activation_func, self.add_layer_norm,
                                  self.activate_output, dropout)

    def add_width(self, dim):
        """New (randomly initialised) MLPs for context width dim (used by tests and training)."""
        self.layers[dim] = (self._module(dim), self._module(dim))

    def set_multiplier(self, multiplier: float):
        self.multiplier = multiplier
        for k, v in self.layers.values():
            k.multiplier = v.multiplier = multiplier

    def to_dict(self) -> dict:
        data = {dim: [k.state_dict(), v.state_dict()] for dim, (k, v) in self.layers.items()}
        data.update({
            "step": self.step, "name": self.name, "layer_structure": self.layer_structure,
            "activation_func": self.activation_func, "is_layer_norm": self.add_layer_norm,
            "weight_initialization": self.weight_initialization, "use_dropout": self.use_dropout,
            "dropout_structure": dropout_for(self.layer_structure, self.use_dropout, self.last_layer_dropout,
                                             self.dropout_structure),
            "last_layer_dropout": self.last_layer_dropout, "activate_output": self.activate_output,
            "sd_checkpoint": self.sd_checkpoint, "sd_checkpoint_name": self.sd_checkpoint_name,
            "optional_info": self.optional_info,
        })
        return data

    def save(self, filename: str):
        torch.save(self.to_dict(), filename)

    @classmethod
    def from_dict(cls, data: dict, name: str) -> "Hypernetwork":
        stored = data.get("dropout_structure")
        use_dropout = bool(data.get("use_dropout", False))
        if stored is not None and any(float(x) > 0 for x in stored):
            use_dropout = True
        hn = cls(name=data.get("name") or name, layer_structure=data.get("layer_structure"),
                 activation_func=data.get("activation_func"), add_layer_norm=data.get("is_layer_norm", False),
                 activate_output=data.get("activate_output", True), use_dropout=use_dropout,
                 last_layer_dropout=data.get("last_layer_dropout", False), dropout_structure=stored,
                 weight_initialization=data.get("weight_initialization", "Normal"))
        hn.step = data.get("step", 0)
        hn.sd_checkpoint = data.get("sd_checkpoint")
        hn.sd_checkpoint_name = data.get("sd_checkpoint_name")
        hn.optional_info = data.get("optional_info")
        for dim, pair in data.items():
            if isinstance(dim, int):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise HypernetworkError(f"width {dim}: expected [state_dict_k, state_dict_v]")
                hn.layers[dim] = (hn._module(dim, pair[0]), hn._module(dim, pair[1]))
        return hn


def load_hypernetwork_file(filename: str, name: str | None = None) -> Hypernetwork:
    name = name or os.path.splitext(os.path.basename(filename))[0]
    try:
        data = torch.load(filename, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise HypernetworkError(f"{filename}: cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise HypernetworkError(f"{filename}: not a hypernetwork (no dictionary inside)")
    try:
        hn = Hypernetwork.from_dict(data, name)
    except HypernetworkError as e:
        raise HypernetworkError(f"{filename}: {e}") from None
    hn.filename = filename
    return hn


# ----------------------------------------------------------------------------------------- listing

hypernetworks: dict[str, str] = {}  # name -> path (A1111's shared.hypernetworks)


def hypernetwork_folder() -> str:
    from modules import shared
    return getattr(shared.cmd_opts, "hypernetwork_dir", None) or os.path.join(shared.paths.models, "hypernetworks")


def list_hypernetworks() -> dict[str, str]:
    folder = hypernetwork_folder()
    os.makedirs(folder, exist_ok=True)
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.pt"), recursive=True), key=str.lower):
        name = os.path.splitext(os.path.basename(path))[0]
        if name != "None":
            found[name] = path
    hypernetworks.clear()
    hypernetworks.update(found)
    return hypernetworks


# ----------------------------------------------------------------------------------------- applying

def _hook_for(active: list[Hypernetwork], which: int):
    def hook(_module, args):
        x = args[0]
        width = x.shape[-1]
        out = x
        changed = False
        for hn in active:
            pair = hn.layers.get(width)
            if pair is None:
                continue
            mlp = pair[which]
            out = mlp(out.to(torch.float32) if not changed else out)
            changed = True
        if not changed:
            return None
        return (out.to(x.dtype),) + tuple(args[1:])
    return hook


class HypernetworkHooks:
    """Pre-hooks on to_k / to_v of every UNet attention while a set is active."""

    def __init__(self):
        self.handles = []

    def install(self, unet, active: list[Hypernetwork], device) -> None:
        self.remove()
        if not active:
            return
        for hn in active:
            for k, v in hn.layers.values():
                k.to(device)
                v.to(device)
        hook_k, hook_v = _hook_for(active, 0), _hook_for(active, 1)
        for name, module in unet.named_modules():
            if hasattr(module, "to_k") and hasattr(module, "to_v") and isinstance(module.to_k, torch.nn.Linear):
                self.handles.append(module.to_k.register_forward_pre_hook(hook_k))
                self.handles.append(module.to_v.register_forward_pre_hook(hook_v))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


hooks = HypernetworkHooks()
loaded_hypernetworks: list[Hypernetwork] = []


class ExtraNetworkHypernet(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("hypernet")

    def activate(self, p, params_list):
        global loaded_hypernetworks
        from modules import shared
        opts = shared.opts
        wanted = []
        for params in params_list:
            if not params.items:
                continue
            name = params.items[0]
            try:
                multiplier = float(params.items[1]) if len(params.items) > 1 else 1.0
            except ValueError:
                p.comment(f"Hypernetwork tag <hypernet:{':'.join(params.items)}> skipped: "
                          f"{params.items[1]!r} is not a number")
                continue
            wanted.append((name, multiplier))
        extra = getattr(opts, "sd_hypernetwork", "None")
        if extra and extra != "None" and extra not in [n for n, _ in wanted]:
            wanted.append((extra, float(opts.extra_networks_default_multiplier)))
        if any(name not in hypernetworks for name, _ in wanted):
            list_hypernetworks()
        previous = {hn.name: hn for hn in loaded_hypernetworks}
        active, missing = [], []
        for name, multiplier in wanted:
            path = hypernetworks.get(name)
            if path is None:
                missing.append(name)
                continue
            hn = previous.get(name)
            if hn is None or hn.filename != path:
                try:
                    hn = load_hypernetwork_file(path, name)
                except HypernetworkError as e:
                    log.error("Hypernetwork failed to load: %s", e)
                    p.comment(f"Hypernetwork failed to load: {name} ({e})")
                    continue
                if getattr(opts, "print_hypernet_extra", False):
                    print(f"Hypernetwork {name}: widths {sorted(hn.layers)}, layers {hn.layer_structure}, "
                          f"activation {hn.activation_func}, layer norm {hn.add_layer_norm}")
            hn.name = name
            active.append((hn, multiplier))
        if missing:
            p.comment(f"Hypernetwork not found: {', '.join(missing)}")
        # one object per name: a name used twice keeps its last multiplier
        objects = []
        for hn, multiplier in active:
            hn.set_multiplier(multiplier)
            if hn not in objects:
                objects.append(hn)
        loaded_hypernetworks = objects
        self._active = objects
        model = shared.model_holder.sd_model if shared.model_holder is not None else None
        if model is None or not objects:
            hooks.remove()
            return
        hooks.install(model.unet, objects, model.device_config.device)

    def model_switched(self, model):
        """A refiner or hires checkpoint took over during the batch: the hooks move onto its UNet."""
        if getattr(self, "_active", None):
            hooks.install(model.unet, self._active, model.device_config.device)

    def deactivate(self, p):
        self._active = []
        hooks.remove()
