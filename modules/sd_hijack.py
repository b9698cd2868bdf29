"""A1111's `modules.sd_hijack` names extensions use: the list of cross-attention optimisations,
built from the program's own entry and every on_list_optimizers callback (highest priority first)."""
from modules import errors, script_callbacks, sd_hijack_optimizations

optimizers: list = []
current_optimizer = None


def list_optimizers() -> list:
    found = []
    sd_hijack_optimizations.list_optimizers(found)
    for optimizer in script_callbacks.list_optimizers_callback():
        try:
            if optimizer.is_available():
                found.append(optimizer)
        except Exception:  # noqa: BLE001 - an extension's check must not stop start-up
            errors.report(f"Error checking optimizer {getattr(optimizer, 'name', optimizer)!r}", exc_info=True)
    optimizers[:] = sorted(found, key=lambda o: o.priority, reverse=True)
    return optimizers


def optimizer_titles() -> list[str]:
    return [optimizer.title() for optimizer in optimizers]
