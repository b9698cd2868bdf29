"""preload.py of enabled extensions (extensions.md §3 step 1): user extensions (sorted), then
built-in ones, each `preload(parser)` called with the argparse parser before the command line is
parsed, so extensions can add flags. A preload that raises is reported with its extension's name."""
import argparse
import importlib.util
import json
import os

from modules import errors
from modules.paths import script_path


def _data_dir(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data-dir", default=None)
    pre.add_argument("--ui-settings-file", default=None)
    pre.add_argument("--disable-all-extensions", action="store_true")
    pre.add_argument("--disable-extra-extensions", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known


def preload_files(argv: list[str]) -> list[tuple[str, str]]:
    """(extension name, preload.py path) in the order they run."""
    known = _data_dir(argv)
    data = os.path.abspath(known.data_dir) if known.data_dir else script_path
    settings_file = known.ui_settings_file or os.path.join(data, "config.json")
    try:
        with open(settings_file, encoding="utf8") as file:
            settings = json.load(file)
    except (OSError, ValueError):
        settings = {}
    mode = "all" if known.disable_all_extensions else "extra" if known.disable_extra_extensions \
        else settings.get("disable_all_extensions", "none")
    disabled = set(settings.get("disabled_extensions") or [])
    found = []
    for folder, builtin in ((os.path.join(data, "extensions"), False),
                            (os.path.join(script_path, "extensions-builtin"), True)):
        if mode == "all" or (mode == "extra" and not builtin) or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name, "preload.py")
            if name not in disabled and os.path.isfile(path):
                found.append((name, path))
    return found


def run_preloads(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    for name, path in preload_files(argv):
        try:
            spec = importlib.util.spec_from_file_location(f"webui_preload_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception:  # noqa: BLE001 - a broken extension must not stop the program
            errors.report(f"Error running preload.py of extension {name}", exc_info=True)
