"""Runs enabled user extensions' install.py (extensions.md §3 step 2), each with the venv's Python
and the program folder on PYTHONPATH (so `import launch` works). Unlike A1111, an installer runs
only when its extension is new or its files changed since its last successful run (a content hash
kept in cache.json). A failing installer is reported with the extension's name; the others run.

    python -m modules.extension_loading.installer [the program's flags]
"""
import hashlib
import json
import os
import subprocess
import sys

from modules.extension_loading.pip_install import ROOT

CACHE_KEY = "extensions-installed"


def content_hash(folder: str) -> str:
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__"))
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as file:
                digest.update(file.read())
    return digest.hexdigest()


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


def _write_cache(path: str, key: str, value: dict) -> None:
    data = _read_json(path)
    data[key] = value
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf8") as file:
        json.dump(data, file, indent=2)
    os.replace(tmp, path)


def run_install_script(name: str, folder: str) -> tuple[bool, str]:
    """(succeeded, output) of one install.py."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               WEBUI_EXTENSION_NAME=name)
    result = subprocess.run([sys.executable, os.path.join(folder, "install.py")], cwd=folder, env=env,
                            capture_output=True, text=True)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def run_extension_installers(data_dir: str, settings_file: str, cache_file: str, *, disable_all: bool = False,
                             disable_extra: bool = False) -> list[str]:
    """Run the installers that need to run; returns the report lines (also printed)."""
    settings = _read_json(settings_file)
    if disable_all or disable_extra or settings.get("disable_all_extensions", "none") != "none":
        return []
    disabled = set(settings.get("disabled_extensions") or [])
    folder = os.path.join(data_dir, "extensions")
    if not os.path.isdir(folder):
        return []
    done = dict(_read_json(cache_file).get(CACHE_KEY, {}))
    report = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name in disabled or not os.path.isfile(os.path.join(path, "install.py")):
            continue
        digest = content_hash(path)
        if done.get(name) == digest:
            continue
        ok, output = run_install_script(name, path)
        if output:
            print(output)
        if ok:
            done[name] = digest
            report.append(f"Extension {name}: install.py finished")
        else:
            last = output.splitlines()[-1] if output else "no output"
            report.append(f"Extension {name}: install.py failed ({last}); the program starts without its packages")
        print(report[-1])
        _write_cache(cache_file, CACHE_KEY, done)
    return report


def main(argv=None) -> None:
    from modules import cmd_args
    from modules.paths import Paths
    args, _unknown = cmd_args.build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    paths = Paths.from_args(args)
    run_extension_installers(paths.data, paths.settings_file, paths.cache_file,
                             disable_all=args.disable_all_extensions, disable_extra=args.disable_extra_extensions)


if __name__ == "__main__":
    main()
