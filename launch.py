"""Bootstrap: create venv/, install the pinned requirements, then start the web UI inside venv/.

`python3 launch.py [flags]` is the one command a new user runs. Requirements are reinstalled only
when requirements*.txt change (a stamp file in venv/ remembers their hash). Packages in
requirements-nodeps.txt are installed after the others without their declared dependencies (whose
needs the main list already covers, and which would bring a second OpenCV owning cv2).
"""
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, "venv")
VENV_PYTHON = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin",
                           "python.exe" if os.name == "nt" else "python")
STAMP = os.path.join(VENV, ".requirements-installed")
MIN_PYTHON = (3, 10)


NODEPS_REQUIREMENTS = os.path.join(ROOT, "requirements-nodeps.txt")


def _requirement_files(with_tests: bool) -> list[str]:
    names = ["requirements.txt"] + (["requirements-test.txt"] if with_tests else [])
    return [os.path.join(ROOT, name) for name in names]


def _install_commands(files: list[str]) -> list[list[str]]:
    """pip runs: the pinned requirements together, then the no-deps list on its own."""
    base = [VENV_PYTHON, "-m", "pip", "install", "--disable-pip-version-check"]
    command = list(base)
    for path in files:
        command += ["-r", path]
    return [command, base + ["--no-deps", "-r", NODEPS_REQUIREMENTS]]


def _digest(files: list[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()


def prepare_environment(with_tests: bool = False) -> None:
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is {sys.version.split()[0]}")
    if not os.path.exists(VENV_PYTHON):
        print(f"Creating the virtual environment in {VENV}")
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    files = _requirement_files(with_tests)
    wanted = _digest(files + [NODEPS_REQUIREMENTS])
    installed = open(STAMP).read().strip() if os.path.exists(STAMP) else ""
    if installed != wanted:
        print("Installing requirements (first run takes a while)")
        for command in _install_commands(files):
            subprocess.check_call(command)
        with open(STAMP, "w") as file:
            file.write(wanted)


def run_extension_installers(argv: list[str]) -> None:
    """Enabled user extensions' install.py, in the venv (extensions.md §3 step 2): a failing one is
    reported by name and the program still starts."""
    subprocess.call([VENV_PYTHON, "-m", "modules.extension_loading.installer", *argv], cwd=ROOT)


# -- A1111's helpers for extensions' install.py (`import launch`) ---------------------------------
python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"


def is_installed(package: str) -> bool:
    """True when a distribution (or an importable module) of this name is installed."""
    import importlib.metadata
    import importlib.util
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def run(command, desc=None, errdesc=None, custom_env=None, live: bool = False) -> str:
    """Run a shell command; raise RuntimeError with its output when it fails."""
    if desc:
        print(desc)
    result = subprocess.run(command, shell=isinstance(command, str), env=custom_env or os.environ,
                            capture_output=not live, text=True)
    if result.returncode != 0:
        message = f"{errdesc or 'Error running command'}.\nCommand: {command}\nError code: {result.returncode}"
        if not live:
            message += f"\nstdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        raise RuntimeError(message)
    return result.stdout or ""


def run_pip(command, desc=None, live: bool = False) -> str:
    """pip with the program's pinned requirements as constraints (an extension cannot replace them)."""
    sys.path.insert(0, ROOT)
    from modules.extension_loading.pip_install import run_pip as constrained_pip
    return constrained_pip(command, f"requirements for {desc}" if desc else None, live=live)


def git_clone(url, dir, name, commithash=None) -> None:  # noqa: A002 - A1111's parameter name
    """Clone `url` into `dir` unless it exists (needs network access: fails with git's message offline)."""
    if os.path.exists(dir):
        return
    run(f'"{git}" clone "{url}" "{dir}"', f"Cloning {name} into {dir}...", f"Couldn't clone {name}")
    if commithash:
        run(f'"{git}" -C "{dir}" checkout {commithash}', None, f"Couldn't checkout {name}'s hash: {commithash}")


def repo_dir(name: str) -> str:
    return os.path.join(ROOT, dir_repos, name)


def __getattr__(name):
    if name == "args":  # the parsed command line, as A1111's launch.args
        sys.path.insert(0, ROOT)
        from modules import cmd_args
        return cmd_args.build_parser().parse_known_args(sys.argv[1:])[0]
    raise AttributeError(name)


def in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def main() -> None:
    argv = sys.argv[1:]
    skip = "--skip-install" in argv or "--skip-prepare-environment" in argv
    with_tests = "--with-tests" in argv
    argv = [a for a in argv if a != "--with-tests"]
    if not skip:
        prepare_environment(with_tests)
        run_extension_installers(argv)
    if "--exit" in argv:
        print("Environment ready.")
        return
    if not in_venv():
        os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), "--skip-install", *argv])
    sys.path.insert(0, ROOT)
    import webui
    webui.main(argv)


if __name__ == "__main__":
    main()
