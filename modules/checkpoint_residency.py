"""Settings > Actions and /sdapi/v1/unload-checkpoint, /reload-checkpoint: move the loaded
checkpoint's weights to RAM and back to the device. Call these on the job queue worker."""
import time

from modules import devices


def _components(model) -> dict:
    components = {"unet": model.unet, "vae": model.vae}
    components.update({f"text_encoder_{i}": enc for i, enc in enumerate(model.text_encoders)})
    return components


def unload_to_ram(holder) -> str:
    model = holder.sd_model
    if model is None:
        return "No checkpoint is loaded."
    started = time.perf_counter()
    for module in _components(model).values():
        if not getattr(module, "_sequential_offload", False):  # accelerate's hooks own those weights
            module.to("cpu")
    model.in_ram = True
    devices.torch_gc()
    return f"Unloaded {model.sd_checkpoint_info.title} to RAM in {time.perf_counter() - started:.2f} s."


def reload_to_device(holder) -> str:
    model = holder.sd_model
    if model is None:
        return "No checkpoint is loaded."
    started = time.perf_counter()
    restore(model)
    return (f"Loaded {model.sd_checkpoint_info.title} to {model.device_config.device} "
            f"in {time.perf_counter() - started:.2f} s.")


def restore(model) -> None:
    """Put an unloaded model's weights back where its memory mode wants them (no-op otherwise)."""
    if not getattr(model, "in_ram", False):
        return
    config = model.device_config
    for name, module in _components(model).items():
        if not config.offloads:
            module.to(config.device)
    model.in_ram = False
