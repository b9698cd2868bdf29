"""System information for bug reports (Settings > Sysinfo, /internal/sysinfo): platform, versions,
paths, command line, torch, CPU, RAM, environment, settings, start-up timings, packages, and a
checksum that shows whether the text was edited after it was written (ui.md §9.5)."""
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from modules import paths

# Written in place of the checksum while the checksum is computed.
CHECKSUM_PLACEHOLDER = "(computed over this text with this placeholder in place)"

ENVIRONMENT_WHITELIST = {
    "GIT", "INDEX_URL", "WEBUI_LAUNCH_LIVE_OUTPUT", "GRADIO_ANALYTICS_ENABLED", "PYTHONPATH",
    "TORCH_INDEX_URL", "TORCH_COMMAND", "REQS_FILE", "XFORMERS_PACKAGE", "CLIP_PACKAGE",
    "OPENCLIP_PACKAGE", "COMMANDLINE_ARGS", "IGNORE_CMD_ARGS_ERRORS", "CUDA_VISIBLE_DEVICES",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS", "PYTORCH_CUDA_ALLOC_CONF",
}
SECRET_FLAGS = ("--api-auth", "--gradio-auth", "--ngrok", "--tls-keyfile")


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", "-C", paths.script_path, *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def masked_argv(argv: list[str]) -> list[str]:
    """The command line with credentials replaced: reports get pasted into public issues."""
    masked, hide_next = [], False
    for arg in argv:
        if hide_next:
            masked.append("<hidden>")
            hide_next = False
        elif arg in SECRET_FLAGS:
            masked.append(arg)
            hide_next = True
        elif any(arg.startswith(flag + "=") for flag in SECRET_FLAGS):
            masked.append(arg.split("=", 1)[0] + "=<hidden>")
        else:
            masked.append(arg)
    return masked


def _torch_info() -> dict:
    import torch
    info = {"version": torch.__version__, "debug_build": torch.version.debug,
            "cuda_compiled_version": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _ram() -> dict:
    import psutil
    memory = psutil.virtual_memory()
    return {"total": memory.total, "used": memory.used, "free": memory.available}


def _packages() -> list[str]:
    return sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions()
                  if dist.metadata["Name"])


def extension_list(enabled: bool) -> list[dict]:
    """The extension loader's list (built-in and user), enabled or disabled ones, with the git
    facts where the folder is a repository (None where unknown)."""
    from modules import extensions
    items = []
    for ext in extensions.extensions:
        if ext.enabled != enabled:
            continue
        ext.read_info_from_repo()
        items.append({"name": ext.name, "path": ext.path, "builtin": ext.is_builtin,
                      "commit": ext.commit_hash or None, "branch": ext.branch, "remote": ext.remote})
    return items


def get_dict() -> dict:
    from modules import errors, infotext_utils, shared
    from modules.startup_timer import startup_timer
    return {
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": infotext_utils.version_string(),
        "Commit": _git("rev-parse", "HEAD"),
        "Git status": _git("status", "--short"),
        "Script path": paths.script_path,
        "Data path": shared.paths.data,
        "Extensions dir": os.path.join(shared.paths.data, "extensions"),
        "Checksum": CHECKSUM_PLACEHOLDER,
        "Commandline": masked_argv(sys.argv),
        "Torch env info": _torch_info(),
        "Exceptions": errors.get_exceptions(),
        "CPU": {"model": platform.processor(), "count logical": os.cpu_count()},
        "RAM": _ram(),
        "Extensions": extension_list(enabled=True),
        "Inactive extensions": extension_list(enabled=False),
        "Environment": {k: v for k, v in os.environ.items() if k in ENVIRONMENT_WHITELIST},
        "Config": dict(shared.opts.data),
        "Startup": startup_timer.summary(),
        "Packages": _packages(),
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def get_text() -> str:
    text = json.dumps(get_dict(), ensure_ascii=False, indent=4, default=str)
    return text.replace(json.dumps(CHECKSUM_PLACEHOLDER), json.dumps(_digest(text)), 1)


def check(text: str) -> bool:
    """True when the report is as written: its checksum matches the rest of its text."""
    try:
        checksum = json.loads(text).get("Checksum")
    except (ValueError, AttributeError):
        return False
    if not isinstance(checksum, str):
        return False
    original = text.replace(json.dumps(checksum), json.dumps(CHECKSUM_PLACEHOLDER), 1)
    return _digest(original) == checksum
