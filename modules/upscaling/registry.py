"""Upscaler names and the weight files behind them (extras.md §1.1-§1.4).

The registry is rebuilt from the folders on every call to `list_upscalers` (a directory scan is
cheap), so model files added while the server runs show up in API lists without a restart.
"""
import os
import re
from dataclasses import dataclass

BUILTIN_FAMILY = "builtin"


class UnknownUpscaler(ValueError):
    """An upscaler name this install does not offer (API: 422 with the valid names)."""


class UpscalerUnavailable(RuntimeError):
    """A known upscaler whose weight file is absent or unreadable (API: 503)."""


@dataclass(frozen=True)
class UpscalerEntry:
    name: str
    family: str               # builtin, ESRGAN, RealESRGAN, DAT, HAT, SwinIR, ScuNET
    path: str | None          # the weight file; None for built-ins and absent fixed entries
    scale: float | None       # the listed scale (never read from the file)
    model_name: str | None    # A1111's per-family default name (GET /upscalers)
    required_file: str | None = None  # fixed entries: the file A1111 would download
    folder: str | None = None         # where that file goes

    @property
    def is_builtin(self) -> bool:
        return self.family == BUILTIN_FAMILY

    @property
    def available(self) -> bool:
        return self.is_builtin or self.path is not None

    def missing_message(self) -> str:
        return (f"Upscaler '{self.name}' needs {self.required_file} in {self.folder} (not downloaded); "
                f"put the file there and choose it again")


# family -> (folder under models/, flag attribute, extensions, A1111 model_name, scale of user files).
# A1111 never lists .safetensors files; we do (extras.md §8 target 8).
FAMILIES = {
    "ESRGAN": ("ESRGAN", "esrgan_models_path", (".pt", ".pth", ".safetensors"), "ESRGAN_4x", 4),
    "RealESRGAN": ("RealESRGAN", "realesrgan_models_path", (".pth", ".safetensors"), None, None),
    "DAT": ("DAT", "dat_models_path", (".pt", ".pth", ".safetensors"), None, None),
    "HAT": ("HAT", None, (".pt", ".pth", ".safetensors"), None, 4),
    "SwinIR": ("SwinIR", "swinir_models_path", (".pt", ".pth", ".safetensors"), "SwinIR 4x", 4),
    "ScuNET": ("ScuNET", "scunet_models_path", (".pth", ".safetensors"), "ScuNET GAN", 4),
}

# extras.md §1.2: name -> (file, scale)
REALESRGAN_MODELS = {
    "R-ESRGAN General 4xV3": ("realesr-general-x4v3.pth", 4),
    "R-ESRGAN General WDN 4xV3": ("realesr-general-wdn-x4v3.pth", 4),
    "R-ESRGAN AnimeVideo": ("realesr-animevideov3.pth", 4),
    "R-ESRGAN 4x+": ("RealESRGAN_x4plus.pth", 4),
    "R-ESRGAN 4x+ Anime6B": ("RealESRGAN_x4plus_anime_6B.pth", 4),
    "R-ESRGAN 2x+": ("RealESRGAN_x2plus.pth", 2),
}
DAT_MODELS = {"DAT x2": ("DAT_x2.pth", 2), "DAT x3": ("DAT_x3.pth", 3), "DAT x4": ("DAT_x4.pth", 4)}


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def family_folders(family: str, models_dir: str, cmd_opts) -> list[str]:
    """The flag's folder first (its experiments/pretrained_models sub-folder when present), then
    models/<Family>."""
    sub, flag, *_ = FAMILIES[family]
    folders = []
    flagged = getattr(cmd_opts, flag, None) if flag else None
    if flagged:
        nested = os.path.join(flagged, "experiments", "pretrained_models")
        folders.append(nested if os.path.isdir(nested) else flagged)
    folders.append(os.path.join(models_dir, sub))
    return folders


def scan_folder(folder: str, extensions: tuple, list_hidden: bool) -> list[str]:
    """Model files under folder: recursive, links followed, natural order by folder then file."""
    found = []
    if not os.path.isdir(folder):
        return found
    for root, dirs, files in os.walk(folder, followlinks=True):
        relative = os.path.relpath(root, folder)
        if not list_hidden and any(part.startswith(".") for part in relative.split(os.sep) if part != "."):
            continue
        for name in files:
            path = os.path.join(root, name)
            if os.path.splitext(name)[1].lower() in extensions and os.path.exists(path):  # broken links
                found.append(os.path.abspath(path))
    return sorted(found, key=lambda p: (_natural_key(os.path.dirname(p)), _natural_key(os.path.basename(p))))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _find_file(files: list[str], file_name: str) -> str | None:
    """A local file matches when its path ends with the fixed file name (any sub-folder or prefix)."""
    return next((path for path in files if path.endswith(file_name)), None)


def list_upscalers(models_dir: str, cmd_opts, opts) -> list[UpscalerEntry]:
    """Every upscaler name, A1111's order: None, Lanczos, Nearest, then by lower-case name."""
    entries = []
    list_hidden = bool(getattr(opts, "list_hidden_files", True))
    for family, (sub, _flag, extensions, model_name, user_scale) in FAMILIES.items():
        folders = family_folders(family, models_dir, cmd_opts)
        files = [path for folder in folders for path in scan_folder(folder, extensions, list_hidden)]
        home = folders[-1]

        def fixed(name, file_name, scale, local=None):
            return UpscalerEntry(name, family, local, scale, model_name, file_name, home)

        if family == "RealESRGAN":
            enabled = list(getattr(opts, "realesrgan_enabled_models", []) or [])
            entries += [fixed(name, f, s, _find_file(files, f)) for name, (f, s) in REALESRGAN_MODELS.items()
                        if name in enabled]
            continue
        entries += [UpscalerEntry(_stem(path), family, path, user_scale, model_name) for path in files]
        if family == "ESRGAN" and not files:
            entries.append(fixed("ESRGAN_4x", "ESRGAN_4x.pth", 4))
        elif family == "DAT":
            enabled = list(getattr(opts, "dat_enabled_models", []) or [])
            entries += [fixed(name, f, s, _find_file(files, f)) for name, (f, s) in DAT_MODELS.items()
                        if name in enabled]
        elif family == "SwinIR" and not files:
            entries.append(fixed("SwinIR 4x", "SwinIR_4x.pth", 4))
        elif family == "ScuNET":
            if not files:
                entries.append(fixed("ScuNET GAN", "ScuNET.pth", 4))
            if not any(_stem(path) == "ScuNET PSNR" for path in files):
                # the PSNR weights themselves, when the user has them (extras.md §8 target 6)
                psnr = "scunet_color_real_psnr.pth"
                entries.append(fixed("ScuNET PSNR", psnr, 4, _find_file(files, psnr)))
    entries.sort(key=lambda e: e.name.lower())
    builtins = [UpscalerEntry(name, BUILTIN_FAMILY, None, 4, None) for name in ("None", "Lanczos", "Nearest")]
    return builtins + entries


def find_in(entries: list[UpscalerEntry], name: str | None) -> UpscalerEntry:
    """The first entry with exactly this name (names may repeat); unknown names list the valid ones."""
    name = name or "None"
    for entry in entries:
        if entry.name == name:
            return entry
    raise UnknownUpscaler(f"Upscaler '{name}' not found; valid names: {', '.join(e.name for e in entries)}")
