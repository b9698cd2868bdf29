"""A1111's `modules.sd_unet`: UNet replacements extensions offer (TensorRT-style engines) through
on_list_unets, and the choice the `sd_unet` setting makes among them."""
import torch

from modules import script_callbacks, shared

unet_options: list = []
current_unet_option = None
current_unet = None


class SdUnetOption:
    model_name: str | None = None  # the checkpoint it belongs to (for "Automatic")
    label: str | None = None

    def create_unet(self):  # abstract: an extension's option subclass builds its UNet
        raise NotImplementedError(f"{type(self).__name__} must define create_unet()")


class SdUnet(torch.nn.Module):
    def forward(self, x, timesteps, context, *args, **kwargs):  # abstract, as in A1111
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def activate(self):
        pass

    def deactivate(self):
        pass


def list_unets() -> list:
    unet_options[:] = script_callbacks.list_unets_callback()
    return unet_options


def get_unet_option(option: str | None = None):
    """The option the setting names: "None" → None; "Automatic" → the first one for the loaded
    checkpoint's model name; else the option with that label (None when there is none)."""
    option = option or shared.opts.sd_unet
    if option == "None":
        return None
    if option == "Automatic":
        holder = shared.model_holder
        model = holder.sd_model if holder is not None else None
        name = model.sd_checkpoint_info.model_name if model is not None else None
        matching = [x for x in unet_options if x.model_name == name]
        option = matching[0].label if matching else "None"
    return next((x for x in unet_options if x.label == option), None)
