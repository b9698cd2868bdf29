"""Prompt styles: named (prompt, negative prompt) pairs kept in CSV files (prompt-syntax.md §2).

Files have the header `name,prompt,negative_prompt` and may start with a UTF-8 BOM. Several files
can be given (`--styles-file`, wildcards allowed); the first one receives new styles. Each style
remembers the file it came from, so saving rewrites every file with its own styles only.
"""
from __future__ import annotations

import csv
import glob
import os
import secrets
import threading
from typing import Iterable, NamedTuple

from modules import infotext_utils, shared

FIELDS = ("name", "prompt", "negative_prompt")


class PromptStyle(NamedTuple):
    name: str
    prompt: str | None
    negative_prompt: str | None
    path: str | None = None


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """One style applied to one prompt: `{prompt}` is replaced, otherwise the texts are joined."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Apply style texts in the given order."""
    for style in styles:
        prompt = merge_prompts(style or "", prompt)
    return prompt


def _has_wildcard(path: str) -> bool:
    return any(c in os.path.basename(path) for c in "*?[")


class StyleDatabase:
    def __init__(self, paths: list):
        self.no_style = PromptStyle("None", "", "", None)
        self.paths = [str(p) for p in paths]
        self.styles: dict[str, PromptStyle] = {}
        self.all_styles_files: list[str] = []
        self._rows: dict[str, list[PromptStyle]] = {}  # file -> its styles, in file order
        self._lock = threading.RLock()
        self.default_file = self._default_file()
        self.reload()

    def _default_file(self) -> str:
        first = self.paths[0] if self.paths else "styles.csv"
        if not _has_wildcard(first):
            return first
        matches = sorted(glob.glob(first))
        # no file matches yet: new styles go next to where the pattern points
        return matches[0] if matches else os.path.join(os.path.dirname(first), "styles.csv")

    # -- loading ---------------------------------------------------------------------------------
    def _style_files(self) -> list[str]:
        files = []
        for path in self.paths:
            files.extend(sorted(glob.glob(path)) if _has_wildcard(path) else [path])
        files.append(self.default_file)
        return list(dict.fromkeys(os.path.abspath(f) for f in files if os.path.isfile(f)))

    def reload(self) -> None:
        with self._lock:
            self.styles.clear()
            self._rows.clear()
            self.all_styles_files = self._style_files()
            for path in self.all_styles_files:
                self._rows[path] = read_styles_csv(path)
            self._rebuild_index()

    def _rebuild_index(self) -> None:
        self.styles.clear()
        for rows in self._rows.values():
            for style in rows:
                self.styles[style.name] = style  # a later file wins for a duplicate name

    # -- applying --------------------------------------------------------------------------------
    def get_style_prompts(self, styles: Iterable[str]) -> list[str]:
        return [self.styles.get(name, self.no_style).prompt or "" for name in styles]

    def get_negative_style_prompts(self, styles: Iterable[str]) -> list[str]:
        return [self.styles.get(name, self.no_style).negative_prompt or "" for name in styles]

    def apply_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_style_prompts(styles))

    def apply_negative_styles_to_prompt(self, prompt: str, styles: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_negative_style_prompts(styles))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Styles whose texts the prompts end with (or wrap), in application order, and the rest."""
        return infotext_utils.extract_styles_from_prompt(prompt, negative_prompt, list(self.styles.values()))

    # -- editing (UI) ----------------------------------------------------------------------------
    def get_style_paths(self) -> set[str]:
        return {os.path.abspath(s.path) for s in self.styles.values() if s.path} | \
            {os.path.abspath(self.default_file)}

    def save_style(self, name: str, prompt: str, negative_prompt: str) -> PromptStyle:
        """Create a style (in the default file) or change one (in its own file); saves that file."""
        name = (name or "").strip()
        if not name:
            raise ValueError("A style needs a name")
        with self._lock:
            old = self.styles.get(name)
            path = os.path.abspath(old.path if old and old.path else self.default_file)
            style = PromptStyle(name, prompt or "", negative_prompt or "", path)
            rows = self._rows.setdefault(path, [])
            for i, row in enumerate(rows):
                if row.name == name:
                    rows[i] = style
                    break
            else:
                rows.append(style)
            self._rebuild_index()
            self._write(path)
        return style

    def delete_style(self, name: str) -> bool:
        """Remove a style from its file; False when there is no such style."""
        with self._lock:
            style = self.styles.get(name)
            if style is None:
                return False
            path = os.path.abspath(style.path or self.default_file)
            self._rows[path] = [row for row in self._rows.get(path, []) if row.name != name]
            self._rebuild_index()
            self._write(path)
        return True

    def save_styles(self, path: str | None = None) -> None:
        """Write every styles file (or only `path`), each with its own styles, atomically."""
        with self._lock:
            targets = [os.path.abspath(path)] if path else \
                list(dict.fromkeys([*self._rows, *self.get_style_paths()]))
            for target in targets:
                self._write(target)

    def _write(self, path: str) -> None:
        write_styles_csv(path, self._rows.get(path, []))
        if path not in self.all_styles_files:
            self.all_styles_files.append(path)


def read_styles_csv(path: str) -> list[PromptStyle]:
    """Styles of one file; `utf-8-sig` also reads files without a BOM."""
    styles = []
    with open(path, encoding="utf-8-sig", newline="") as file:
        for row in csv.DictReader(file, skipinitialspace=True):
            name = (row.get("name") or "").strip()
            if not name:
                continue
            prompt = row.get("prompt") if "prompt" in row else row.get("text")  # "text": oldest files
            styles.append(PromptStyle(name, prompt or "", row.get("negative_prompt") or "", os.path.abspath(path)))
    return styles


def write_styles_csv(path: str, styles: Iterable[PromptStyle]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(FIELDS)
            for style in styles:
                writer.writerow([style.name, style.prompt or "", style.negative_prompt or ""])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# -- the process-wide database (A1111: shared.prompt_styles) ------------------------------------
_database: StyleDatabase | None = None
_database_paths: tuple[str, ...] = ()
_database_lock = threading.Lock()


def configured_paths() -> list[str]:
    """`--styles-file` values, or `<data>/styles.csv`."""
    return list(getattr(shared.cmd_opts, "styles_file", None) or []) or \
        [os.path.join(shared.paths.data, "styles.csv")]


def get_database() -> StyleDatabase:
    """The database for the current flags, created on first use (again if the flags changed)."""
    global _database, _database_paths
    paths = tuple(configured_paths())
    with _database_lock:
        if _database is None or paths != _database_paths:
            _database, _database_paths = StyleDatabase(list(paths)), paths
        return _database


def reset_database() -> None:
    """Forget the database, so the next get_database() reads the files again."""
    global _database
    with _database_lock:
        _database = None


shared.lazy_attributes["prompt_styles"] = get_database  # A1111's shared.prompt_styles
