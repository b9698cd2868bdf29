"""Where face-restoration weights live (extras.md §3.1). Nothing is ever downloaded: a missing file
is a message naming the file and the folder."""
import os

from modules import shared

DETECTION_FILE = "detection_Resnet50_Final.pth"   # facexlib RetinaFace R50
PARSING_FILE = "parsing_parsenet.pth"             # facexlib ParseNet, 19 classes

# restorer -> (folder under models/, flag attribute, A1111 download name)
RESTORERS = {
    "CodeFormer": ("Codeformer", "codeformer_models_path", "codeformer-v0.1.0.pth"),
    "GFPGAN": ("GFPGAN", "gfpgan_models_path", "GFPGANv1.4.pth"),
}


class FaceRestorationUnavailable(RuntimeError):
    """Weights missing (API: 503); the message names the folder and the files."""


def folder(name: str) -> str:
    sub, flag, _ = RESTORERS[name]
    return getattr(shared.cmd_opts, flag, None) or os.path.join(shared.paths.models, sub)


def facexlib_folder() -> str:
    """Detection and parsing weights serve both restorers and live in the GFPGAN folder."""
    return folder("GFPGAN")


def _pth_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        return []
    found = []
    for root, _dirs, files in os.walk(path, followlinks=True):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(".pth")]
    return sorted(found)


def network_file(name: str) -> str:
    """CodeFormer: the first .pth in its folder; GFPGAN: the first .pth whose name contains GFPGAN
    (facexlib's own files share that folder)."""
    home = folder(name)
    candidates = [p for p in _pth_files(home)
                  if os.path.basename(p) not in (DETECTION_FILE, PARSING_FILE)]
    if name == "GFPGAN":
        candidates = [p for p in candidates if "gfpgan" in os.path.basename(p).lower()]
    if not candidates:
        raise FaceRestorationUnavailable(
            f"{name} face restoration needs its weights: put {RESTORERS[name][2]} into {home} "
            f"(and {DETECTION_FILE}, {PARSING_FILE} into {facexlib_folder()}); nothing is downloaded")
    return candidates[0]


def facexlib_files() -> tuple[str, str]:
    home = facexlib_folder()
    paths = [os.path.join(home, f) for f in (DETECTION_FILE, PARSING_FILE)]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise FaceRestorationUnavailable(
            f"Face restoration needs the face detection/parsing weights {', '.join(missing)} in {home} "
            f"(nothing is downloaded)")
    return paths[0], paths[1]


def check_available(name: str) -> None:
    network_file(name)
    facexlib_files()
