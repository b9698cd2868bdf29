"""Installed extensions: discovery, metadata.ini, enabled state, version info (extensions.md §1-2).

An extension is a folder of `extensions-builtin/` (program) or `extensions/` (user data). Its
canonical name is the folder name, lower-cased.
"""
import configparser
import os
import re
import subprocess

from modules import errors, shared
from modules.paths import script_path

extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")


def extensions_dir() -> str:
    return os.path.join(shared.paths.data, "extensions")


def _split_list(text: str | None) -> list[str]:
    return [item for item in re.split(r"[,\s]+", text or "") if item]


class ExtensionMetadata:
    """metadata.ini: requirements and Before/After ordering of scripts and callbacks."""

    filename = "metadata.ini"

    def __init__(self, path: str, canonical_name: str):
        self.config = configparser.ConfigParser()
        file = os.path.join(path, self.filename)
        if os.path.isfile(file):
            try:
                self.config.read(file, encoding="utf8")
            except configparser.Error as e:
                errors.report(f"Extension {canonical_name}: cannot read {self.filename}: {e}")
        self.canonical_name = canonical_name  # the folder name wins over [Extension] Name (§1)

    def get_script_requirements(self, field: str, section: str, extra_section: str | None = None) -> list[str]:
        """Items of `field` in `section` (and `extra_section`), each `a|b` kept whole."""
        items = []
        for name in (section, extra_section):
            if name and self.config.has_section(name):
                items += _split_list(self.config.get(name, field, fallback=""))
        return items

    def requires(self) -> list[str]:
        return self.get_script_requirements("Requires", "Extension")

    def callback_rules(self) -> dict[str, tuple[list[str], list[str]]]:
        """[callbacks/<ext>/<file>/<category>[/<name>]] sections: name -> (before, after)."""
        rules = {}
        for section in self.config.sections():
            if section.lower().startswith("callbacks/"):
                name = section[len("callbacks/"):]
                rules[name] = (_split_list(self.config.get(section, "Before", fallback="")),
                               _split_list(self.config.get(section, "After", fallback="")))
        return rules


class Extension:
    def __init__(self, name: str, path: str, enabled: bool = True, is_builtin: bool = False):
        self.name = name
        self.canonical_name = name.lower()
        self.path = path
        self.enabled = enabled
        self.is_builtin = is_builtin
        self.metadata = ExtensionMetadata(path, self.canonical_name)
        self.remote = None
        self.branch = None
        self.commit_hash = ""
        self.commit_date = None
        self.version = ""
        self.have_info_from_repo = False

    def read_info_from_repo(self) -> None:
        """Remote URL, branch, commit and date from the folder's git repository (local commands only)."""
        if self.have_info_from_repo:
            return
        self.have_info_from_repo = True
        if not os.path.isdir(os.path.join(self.path, ".git")):
            return

        def git(*args):
            result = subprocess.run(["git", "-C", self.path, *args], capture_output=True, text=True, timeout=10)
            return result.stdout.strip() if result.returncode == 0 else None
        try:
            self.remote = git("config", "--get", "remote.origin.url")
            self.branch = git("rev-parse", "--abbrev-ref", "HEAD")
            self.commit_hash = git("rev-parse", "HEAD") or ""
            date = git("log", "-1", "--format=%ct")
            self.commit_date = int(date) if date else None
            self.version = self.commit_hash[:8]
        except (OSError, subprocess.SubprocessError) as e:
            errors.report(f"Extension {self.name}: cannot read git info: {e}")

    def list_files(self, subdir: str, extension: str) -> list[str]:
        folder = os.path.join(self.path, subdir)
        if not os.path.isdir(folder):
            return []
        return [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                if os.path.splitext(f)[1].lower() == extension and os.path.isfile(os.path.join(folder, f))]


extensions: list[Extension] = []


def disabled_mode() -> str:
    """'none', 'extra' (only built-ins) or 'all', flags first (§1)."""
    if shared.cmd_opts.disable_all_extensions:
        return "all"
    if shared.cmd_opts.disable_extra_extensions:
        return "extra"
    return shared.opts.disable_all_extensions or "none"


def is_enabled(name: str, is_builtin: bool) -> bool:
    mode = disabled_mode()
    if mode == "all" or (mode == "extra" and not is_builtin):
        return False
    return name not in (shared.opts.disabled_extensions or [])


def list_extensions() -> list[Extension]:
    """Every folder of extensions-builtin/ then extensions/, each sorted by name; a second folder
    with the same canonical name is dropped with an error."""
    found = []
    seen = {}
    for folder, builtin in ((extensions_builtin_dir, True), (extensions_dir(), False)):
        if not os.path.isdir(folder):
            continue
        for dirname in sorted(os.listdir(folder)):
            path = os.path.join(folder, dirname)
            if not os.path.isdir(path) or dirname.startswith("."):
                continue
            canonical = dirname.lower()
            if canonical in seen:
                errors.report(f"Extension {dirname} at {path} has the same name as the one at {seen[canonical]}; "
                              f"it is not loaded")
                continue
            seen[canonical] = path
            found.append(Extension(dirname, path, enabled=is_enabled(dirname, builtin), is_builtin=builtin))
    extensions[:] = found
    names = {e.canonical_name for e in found if e.enabled}
    for ext in found:
        if not ext.enabled:
            continue
        for requirement in ext.metadata.requires():
            if not any(alt.lower() in names for alt in requirement.split("|")):
                errors.report(f"Extension {ext.name} requires extension {requirement}, which is not installed "
                              f"or not enabled")
    return found


def active() -> list[Extension]:
    return [e for e in extensions if e.enabled]


def find_extension(filename: str) -> Extension | None:
    """The extension whose folder holds `filename`."""
    filename = os.path.abspath(filename)
    for ext in extensions:
        if filename.startswith(os.path.abspath(ext.path) + os.sep):
            return ext
    return None
