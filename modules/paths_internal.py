"""A1111's folder names, read from the current command line's folders (modules.shared.paths)."""
import os

from modules.paths import script_path  # noqa: F401

extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")


def __getattr__(name):
    from modules import shared
    values = {
        "data_path": shared.paths.data,
        "models_path": shared.paths.models,
        "extensions_dir": os.path.join(shared.paths.data, "extensions"),
        "default_sd_model_file": None,
        "sd_configs_path": os.path.join(script_path, "configs"),
    }
    if name in values:
        return values[name]
    raise AttributeError(name)
