"""Settings: a registry of OptionInfo, the values saved in config.json, and per-job overrides.

A job's `override_settings` never touch the saved values: `Options.override()` lays them over the
saved ones for the current thread's context only, so other jobs and readers never see them.
"""
import contextlib
import contextvars
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from modules.settings import slider_ranges


class OptionError(ValueError):
    """A setting key or value that cannot be accepted; the message says why."""


@dataclass
class OptionInfo:
    default: Any = None
    label: str = ""
    component: Any = None
    component_args: Any = None
    onchange: Callable | None = None
    section: tuple | None = None
    refresh: Callable | None = None
    comment_before: str = ""
    comment_after: str = ""
    infotext: str | None = None
    restrict_api: bool = False
    category_id: str | None = None
    validate: Callable[[Any], None] | None = field(default=None, repr=False)

    # A1111's fluent helpers, used by extensions when registering settings.
    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label, js_func):
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def needs_restart(self):
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self


def options_section(section_identifier: tuple, options_dict: dict) -> dict:
    """Tag every OptionInfo of the dict with its section, as A1111's helper does."""
    for value in options_dict.values():
        if len(section_identifier) == 2:
            value.section = section_identifier
        else:
            value.section = section_identifier[:2]
            value.category_id = section_identifier[2]
    return options_dict


_overrides: contextvars.ContextVar[dict | None] = contextvars.ContextVar("opts_overrides", default=None)


def convert_value(key: str, info: OptionInfo, value: Any) -> Any:
    """Convert a value to the type of the setting's default ("2" -> 2, "False" -> False)."""
    default = info.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return lowered in ("true", "1")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            if value is None:
                return value
            return str(value)
        if isinstance(default, list):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
    except (TypeError, ValueError):
        raise OptionError(f"Setting '{key}' cannot take the value {value!r}: "
                          f"expected {type(default).__name__}") from None
    return value


def _convert_number(key: str, info: OptionInfo, value: Any) -> Any:
    """convert_value, and numbers stay finite and within int64 (issue 14: no overflow in torch)."""
    from modules import value_limits
    converted = convert_value(key, info, value)
    if isinstance(converted, bool) or not isinstance(converted, (int, float)):
        return converted
    problem = value_limits.float_problem(key, converted) if isinstance(converted, float) \
        else value_limits.integer_problem(key, converted)
    if problem:
        raise OptionError(f"Setting {problem}")
    return converted


def _convert_slider_value(key: str, info: OptionInfo, value: Any) -> Any:
    """_convert_number, and a slider setting's value is a number inside the slider's range; a wrong
    type gets the range in its message too, so the user learns what to send."""
    try:
        converted = _convert_number(key, info, value)
    except OptionError:
        if slider_ranges.bounds(info) is None:
            raise
        converted = None
    problem = slider_ranges.problem(key, info, value, converted)
    if problem:
        raise OptionError(problem)
    return converted


class Options:
    def __init__(self):
        object.__setattr__(self, "data_labels", {})
        object.__setattr__(self, "data", {})
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "frozen_keys", set())
        object.__setattr__(self, "frozen_by", {})  # key -> the flag that froze it, for messages
        # keys read from config.json before anything registered them (extensions' settings, the
        # callback priority lists): checked when they are registered
        object.__setattr__(self, "_unchecked", {})  # key -> the file it came from

    # -- registry --------------------------------------------------------------------------
    def add_option(self, key: str, info: OptionInfo):
        self.data_labels[key] = info
        source = self._unchecked.pop(key, None)
        if source is not None and key in self.data:
            self.data[key] = self._saved_value(key, info, self.data[key], source)
        self.data.setdefault(key, info.default)

    def register(self, options: dict):
        for key, info in options.items():
            self.add_option(key, info)

    # -- reading -----------------------------------------------------------------------------
    def __getattr__(self, key):
        overrides = _overrides.get()
        if overrides and key in overrides:
            return overrides[key]
        data = object.__getattribute__(self, "data")
        if key in data:
            return data[key]
        labels = object.__getattribute__(self, "data_labels")
        if key in labels:
            return labels[key].default
        raise AttributeError(f"No setting named '{key}'")

    def get_default(self, key):
        return self.data_labels[key].default

    def current_values(self) -> dict:
        """Every registered key with its value as seen by the current job."""
        return {key: getattr(self, key) for key in self.data_labels}

    # -- writing -----------------------------------------------------------------------------
    def validate(self, values: dict, *, api: bool = False) -> dict:
        """Check and convert a whole mapping before anything is applied."""
        converted = {}
        for key, value in values.items():
            info = self.data_labels.get(key)
            if info is None:
                raise OptionError(f"Unknown setting '{key}'")
            # the value it already has is accepted: clients post back what GET /options gave them
            current = self.data.get(key, info.default)
            unchanged = current == value and isinstance(current, bool) == isinstance(value, bool)
            if api and info.restrict_api and not unchanged:
                raise OptionError(f"Setting '{key}' cannot be changed through the API")
            if key in self.frozen_keys and not unchanged:
                flag = self.frozen_by.get(key)
                raise OptionError(f"Setting '{key}' is frozen" + (f" by {flag}" if flag else ""))
            value = _convert_slider_value(key, info, value) if not unchanged \
                else _convert_number(key, info, value)
            if info.validate is not None:
                info.validate(value)
            converted[key] = value
        return converted

    def __setattr__(self, key, value):
        self.set(key, value)

    def set(self, key: str, value: Any, run_callbacks: bool = True) -> bool:
        value = self.validate({key: value})[key]
        with self._lock:
            old = self.data.get(key)
            if old == value:
                return False
            self.data[key] = value
        info = self.data_labels[key]
        if run_callbacks and info.onchange is not None:
            try:
                info.onchange()
            except Exception:
                with self._lock:
                    self.data[key] = old
                raise
        return True

    @contextlib.contextmanager
    def override(self, values: dict):
        """Apply settings for the current context (one job) only; restored when it exits."""
        merged = dict(_overrides.get() or {})
        merged.update(self.validate(values))
        token = _overrides.set(merged)
        try:
            yield
        finally:
            _overrides.reset(token)

    # -- persistence -------------------------------------------------------------------------
    def load(self, filename: str):
        """Read config.json. A file that is not a JSON object is moved aside (so the user can
        recover it) and the defaults are used: a broken file must not stop the program."""
        if not os.path.exists(filename):
            return
        try:
            with open(filename, encoding="utf8") as file:
                saved = json.load(file)
            if not isinstance(saved, dict):
                raise ValueError(f"expected a JSON object, found {type(saved).__name__}")
        except (ValueError, UnicodeDecodeError) as e:
            aside = f"{filename}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(filename, aside)
            print(f"Settings file {filename} could not be read ({e}); moved it to {aside} "
                  f"and using the default settings")
            return
        for key, value in saved.items():
            info = self.data_labels.get(key)
            if info is None:
                self.data[key] = value  # kept for extensions that register later
                self._unchecked[key] = filename
                continue
            self.data[key] = self._saved_value(key, info, value, filename)

    @staticmethod
    def _saved_value(key: str, info: OptionInfo, value: Any, filename: str) -> Any:
        """A value read from the settings file, converted; one that POST /options would refuse (a
        wrong type, a slider value outside its range, a stored choice that no longer exists) is
        replaced by the default with a message. The file keeps it until the settings are saved."""
        try:
            converted = _convert_slider_value(key, info, value)
            if info.validate is not None:
                info.validate(converted)
            return converted
        except OptionError as e:
            print(f"Settings file {filename}: {e}; using the default {info.default!r} instead")
            return info.default

    def save(self, filename: str):
        """Write atomically: a temporary file in the same folder, flushed, then renamed over the
        old one, so a crash or a full disk never leaves a half-written config.json."""
        with self._lock:
            content = json.dumps(self.data, indent=4, ensure_ascii=False, default=str)
        folder = os.path.dirname(os.path.abspath(filename))
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(filename) + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf8") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, filename)
        except BaseException:
            os.unlink(tmp)
            raise
