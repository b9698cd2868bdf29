"""pip for extensions' install.py: an extension may add packages but never replace the program's
pinned ones. pip always runs with requirements.txt as constraints, and a request that names a pinned
package with a version the pin does not satisfy is refused before pip runs (nothing downloaded,
the venv unchanged). Standard library (and `packaging`, which pip itself vendors) only: this runs
in install.py processes, before the program is imported.
"""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSTRAINTS = os.path.join(ROOT, "requirements.txt")


class PinConflict(RuntimeError):
    """An extension asked for a version of a package the program pins differently."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(path: str = CONSTRAINTS) -> dict[str, str]:
    """{canonical package name: pinned version} from the requirements file's == / === lines."""
    pins = {}
    with open(path, encoding="utf8") as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            match = re.match(r"^([A-Za-z0-9_.\-]+)\s*={2,3}\s*([^\s;]+)", line)
            if match:
                pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _requirement_args(args: list[str]) -> list[str]:
    """The requirement specifiers among pip install arguments (options and their values skipped)."""
    takes_value = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target",
                   "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix", "--root",
                   "--platform", "--python-version", "--implementation", "--abi", "--src", "--upgrade-strategy",
                   "--progress-bar", "--report", "--trusted-host", "--cache-dir", "--log"}
    found, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = arg in takes_value
            continue
        found.append(arg)
    return found


def conflicts(args: list[str], pins: dict[str, str] | None = None) -> list[str]:
    """One message per requested package whose specifier excludes the program's pinned version."""
    from packaging.requirements import InvalidRequirement, Requirement
    pins = pinned_versions() if pins is None else pins
    problems = []
    for text in _requirement_args(args):
        if os.path.exists(text) or "/" in text or "\\" in text:
            continue  # a local file or folder: pip's resolver (with the constraints) decides
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        pinned = pins.get(_canonical(requirement.name))
        if pinned and requirement.specifier and not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"package {requirement.name} ({text}) conflicts with the program's pinned "
                            f"{requirement.name}=={pinned}")
    return problems


def extension_name() -> str:
    return os.environ.get("WEBUI_EXTENSION_NAME") or os.path.basename(os.getcwd())


def run_pip(command, desc: str | None = None, live: bool = False) -> str:
    """`pip <command>` with the program's pins as constraints; raises PinConflict or RuntimeError."""
    args = shlex.split(command) if isinstance(command, str) else list(command)
    if args and args[0] == "install":
        problems = conflicts(args[1:])
        if problems:
            raise PinConflict(f"Extension {extension_name()}: " + "; ".join(problems)
                              + " — not installed; the environment is unchanged")
        args = args + ["-c", CONSTRAINTS]
    full = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    if desc:
        print(f"Installing {desc}")
    result = subprocess.run(full, capture_output=not live, text=True)
    if result.returncode != 0:
        output = ((result.stdout or "") + (result.stderr or "")).strip()
        kind = "conflicts with the program's pinned packages" if "ResolutionImpossible" in output \
            or "conflict" in output.lower() else "failed"
        raise RuntimeError(f"Extension {extension_name()}: pip {' '.join(args[:2])} {kind}:\n{output[-2000:]}")
    return result.stdout or ""
