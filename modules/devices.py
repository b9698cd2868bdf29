"""Where the model runs and in which precision, chosen once from the flags.

Memory modes: `normal` keeps every component on the device; `medvram` keeps the text encoders,
UNet and VAE in RAM and moves each to the device only while it runs; `lowvram` does the same at the
granularity of submodules (accelerate's sequential offload) for the UNet.
"""
import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceConfig:
    device: torch.device
    dtype: torch.dtype          # UNet and text encoders
    dtype_vae: torch.dtype
    autocast: bool
    memory_mode: str            # "normal", "medvram" or "lowvram"
    nan_check: bool

    @property
    def offloads(self) -> bool:
        return self.memory_mode != "normal" and self.device.type != "cpu"


def choose(cmd_opts) -> DeviceConfig:
    use_cpu = {name.lower() for name in cmd_opts.use_cpu}
    on_cpu = bool(use_cpu & {"all", "sd"}) or not torch.cuda.is_available()
    if on_cpu:
        device = torch.device("cpu")
    elif cmd_opts.device_id is not None:
        device = torch.device(f"cuda:{cmd_opts.device_id}")
    else:
        device = torch.device("cuda")
    half = device.type != "cpu" and not cmd_opts.no_half and cmd_opts.precision != "full"
    dtype = torch.float16 if half else torch.float32
    dtype_vae = torch.float32 if (cmd_opts.no_half_vae or not half) else torch.float16
    if cmd_opts.lowvram:
        mode = "lowvram"
    elif cmd_opts.medvram:
        mode = "medvram"
    else:
        mode = "normal"
    return DeviceConfig(device=device, dtype=dtype, dtype_vae=dtype_vae,
                        autocast=half and cmd_opts.precision == "autocast", memory_mode=mode,
                        nan_check=not cmd_opts.disable_nan_check)


def cpu_config() -> DeviceConfig:
    return DeviceConfig(torch.device("cpu"), torch.float32, torch.float32, False, "normal", True)


@contextlib.contextmanager
def on_device(module: torch.nn.Module, config: DeviceConfig):
    """Run a block with `module` on the compute device; in offload modes move it back after."""
    if not config.offloads or getattr(module, "_sequential_offload", False):
        yield module
        return
    module.to(config.device)
    try:
        yield module
    finally:
        module.to("cpu")
        torch.cuda.empty_cache()


def place_model(components: dict[str, torch.nn.Module], config: DeviceConfig) -> None:
    """Put freshly loaded components where the memory mode wants them."""
    for name, module in components.items():
        dtype = config.dtype_vae if name == "vae" else config.dtype
        if next(module.parameters()).dtype != dtype:
            module.to(dtype=dtype)
        if not config.offloads:
            module.to(config.device)
        elif config.memory_mode == "lowvram" and name == "unet":
            from accelerate import cpu_offload
            cpu_offload(module, execution_device=config.device)
            module._sequential_offload = True


def torch_gc() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
