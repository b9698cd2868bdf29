"""A1111's `modules.sd_unet`: UNet replacements extensions offer (TensorRT-style engines) through
on_list_unets, and the choice the `sd_unet` setting makes among them.

Each job calls apply_unet() with its model and (possibly overridden) settings: the chosen option's
SdUnet is created and activated for that model, the previous one deactivated; the denoiser then
calls the SdUnet's forward instead of the model's UNet (replacement_for). What is active is process
state, like the loaded checkpoint, so a per-request override lasts only until the next job."""
import torch

from modules import errors, script_callbacks, shared
from modules.job_errors import GenerationError

unet_options: list = []
current_unet_option = None
current_unet = None
_current_model = None          # the model current_unet stands in for
_sources: dict[int, str] = {}  # id(option) -> the callback that offered it (names the extension)


class SdUnetError(GenerationError):
    """An option's create_unet() or activate() raised; the message names it and its extension."""


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
    found = script_callbacks.collect_with_sources("list_unets")
    _sources.clear()
    _sources.update({id(option): source for source, option in found})
    unet_options[:] = [option for _source, option in found]
    return unet_options


def choices() -> list[str]:
    """The setting's dropdown, as A1111 lists it."""
    return ["Automatic", *[option.label for option in unet_options], "None"]


def is_known_choice(value) -> bool:
    return value in choices()


def describe(option) -> str:
    return f"'{option.label}' (from {_sources.get(id(option), 'the program')})"


def get_unet_option(option: str | None = None, model=None):
    """The option the setting names: "None" → None; "Automatic" → the first one for the model's
    checkpoint name (default: the loaded model); else the option with that label (None when there
    is none)."""
    option = option or shared.opts.sd_unet
    if option == "None":
        return None
    if option == "Automatic":
        if model is None:
            holder = shared.model_holder
            model = holder.sd_model if holder is not None else None
        name = model.sd_checkpoint_info.model_name if model is not None else None
        matching = [x for x in unet_options if x.model_name == name]
        option = matching[0].label if matching else "None"
    return next((x for x in unet_options if x.label == option), None)


def _deactivate(unet, option) -> None:
    print(f"Deactivating unet: {option.label}")
    try:
        unet.deactivate()
    except Exception:  # noqa: BLE001 - the old UNet is dropped either way; the error is the extension's
        errors.report(f"Deactivating UNet {describe(option)} failed", exc_info=True)


def apply_unet(option: str | None = None, model=None) -> None:
    """Make the SdUnet of the option the setting (or `option`) names active for `model` (default:
    the loaded one). When it cannot be created or activated, SdUnetError (naming the extension) is
    raised and the previous one stays active."""
    global current_unet, current_unet_option, _current_model
    if model is None:
        holder = shared.model_holder
        model = holder.sd_model if holder is not None else None
    new_option = get_unet_option(option, model)
    if new_option is current_unet_option and (new_option is None or _current_model is model):
        return
    previous = (current_unet, current_unet_option, _current_model)
    try:
        unet = new_option.create_unet() if new_option is not None else None
    except Exception as e:  # noqa: BLE001 - an extension's failure: reported with its name
        raise SdUnetError(f"UNet {describe(new_option)} could not be created: {type(e).__name__}: {e}") from e
    if current_unet is not None:
        _deactivate(current_unet, current_unet_option)
    current_unet = current_unet_option = _current_model = None
    if unet is None:
        return
    try:
        unet.option = new_option
        print(f"Activating unet: {new_option.label}")
        unet.activate()
    except Exception as e:  # noqa: BLE001 - an extension's failure: reported with its name
        _reactivate(*previous)
        raise SdUnetError(f"UNet {describe(new_option)} could not be activated: {type(e).__name__}: {e}") from e
    current_unet, current_unet_option, _current_model = unet, new_option, model


def _reactivate(unet, option, model) -> None:
    global current_unet, current_unet_option, _current_model
    if unet is None:
        return
    try:
        unet.activate()
    except Exception:  # noqa: BLE001 - reported; the model's own UNet is used then
        errors.report(f"Re-activating UNet {describe(option)} failed", exc_info=True)
        return
    current_unet, current_unet_option, _current_model = unet, option, model


def setting_changed() -> None:
    """onchange of sd_unet: switch now, on the job queue (it may load an engine); a failure
    refuses the change."""
    from modules.options import OptionError
    try:
        shared.job_queue.run(apply_unet, name="apply-sd-unet")
    except SdUnetError as e:
        errors.report(str(e), exc_info=True)
        raise OptionError(str(e)) from e


def replacement_for(unet_module):
    """The active SdUnet when it stands in for this UNet module, else None."""
    if current_unet is not None and _current_model is not None and \
            getattr(_current_model, "unet", None) is unet_module:
        return current_unet
    return None
