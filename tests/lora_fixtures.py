"""Random LoRA / LyCORIS files for tiny models, in kohya (diffusers-style and LDM-style module
names) and peft/diffusers naming, plus the reference math written from networks.md §3."""
from __future__ import annotations

import torch

from modules.models.ldm_convert import UNET_PREFIX, unet_key_to_ldm

LINEAR_TE_PARTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def text_model_path(path: str) -> str:
    return path if path.startswith("text_model.") else "text_model." + path


def targets(model, unet_filter=None, te=True):
    """[(component, module path, module)] of the Linear / Conv2d layers a LoRA would touch."""
    found = []
    for path, module in model.unet.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and (unet_filter is None or unet_filter(path)):
            found.append(("unet", path, module))
    if te:
        for index, encoder in enumerate(model.text_encoders):
            for path, module in encoder.named_modules():
                if isinstance(module, torch.nn.Linear) and path.endswith(LINEAR_TE_PARTS):
                    found.append((f"te{index}", path, module))
    return found


def kohya_name(component, path, model, style):
    """kohya module name; style 'diffusers' (SD1/SD2 kohya) or 'ldm' (SDXL kohya UNet)."""
    if component == "unet":
        if style == "ldm":
            ldm = unet_key_to_ldm(path + ".weight", model.unet.config)
            return "lora_unet_" + ldm[len(UNET_PREFIX):-len(".weight")].replace(".", "_")
        return "lora_unet_" + path.replace(".", "_")
    sdxl = len(model.text_encoders) == 2
    prefix = ("lora_te1_" if component == "te0" else "lora_te2_") if sdxl else "lora_te_"
    return prefix + text_model_path(path).replace(".", "_")


def peft_key(component, path, part):
    """diffusers save_lora_weights naming: unet.<path>.lora_A.weight, text_encoder(_2).<path>..."""
    prefix = {"unet": "unet.", "te0": "text_encoder.", "te1": "text_encoder_2."}[component]
    return f"{prefix}{path}.{part}"


def random_lora(model, rank=4, alpha=2.0, style="diffusers", seed=0, unet_filter=None, te=True, conv3x3=True):
    """{file key: tensor} and {module: (up, down, alpha)} for every target layer."""
    g = torch.Generator().manual_seed(seed)
    state, factors = {}, {}
    for component, path, module in targets(model, unet_filter, te):
        w = module.weight
        if w.dim() == 4 and w.shape[2] > 1 and not conv3x3:
            continue
        if w.dim() == 2:
            down = torch.randn(rank, w.shape[1], generator=g) * 0.1
            up = torch.randn(w.shape[0], rank, generator=g) * 0.1
        else:
            down = torch.randn(rank, w.shape[1], w.shape[2], w.shape[3], generator=g) * 0.1
            up = torch.randn(w.shape[0], rank, 1, 1, generator=g) * 0.1
        if style == "peft":  # diffusers files carry no alpha: scale 1
            factors[module] = (up, down, float(rank))
            state[peft_key(component, path, "lora_A.weight")] = down
            state[peft_key(component, path, "lora_B.weight")] = up
        else:
            factors[module] = (up, down, alpha)
            name = kohya_name(component, path, model, style)
            state[f"{name}.lora_down.weight"] = down
            state[f"{name}.lora_up.weight"] = up
            state[f"{name}.alpha"] = torch.tensor(alpha)
    return state, factors


def lora_reference(w0, up, down, alpha, multiplier):
    """W0 + m·(alpha/r)·(up @ down), reshaped to W (networks.md §3.1)."""
    r = down.shape[0]
    d = (up.reshape(up.shape[0], -1) @ down.reshape(r, -1)).reshape(w0.shape)
    return w0.float() + d * (alpha / r) * multiplier


def hypernetwork_dict(widths=(32,), seed=0, name="tiny", scale=0.5):
    """An A1111 hypernetwork .pt dict (networks.md §11.1): [1, 2, 1], linear activation."""
    g = torch.Generator().manual_seed(seed)
    data = {"layer_structure": [1, 2, 1], "activation_func": "linear", "is_layer_norm": False,
            "activate_output": False, "use_dropout": False, "name": name, "step": 0}
    for d in widths:
        pair = []
        for _ in range(2):
            pair.append({"linear.0.weight": torch.randn(2 * d, d, generator=g) * scale,
                         "linear.0.bias": torch.randn(2 * d, generator=g) * scale,
                         "linear.1.weight": torch.randn(d, 2 * d, generator=g) * scale,
                         "linear.1.bias": torch.randn(d, generator=g) * scale})
        data[d] = pair
    return data


def hypernetwork_reference(sd, x, multiplier):
    """x + m·MLP(x) for the [1, 2, 1] linear MLP, written out."""
    h = x @ sd["linear.0.weight"].T + sd["linear.0.bias"]
    return x + multiplier * (h @ sd["linear.1.weight"].T + sd["linear.1.bias"])
