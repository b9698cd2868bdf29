"""Bootstrap: create venv/, install the pinned requirements, then start the web UI inside venv/.

`python3 launch.py [flags]` is the one command a new user runs. Requirements are reinstalled only
when requirements*.txt change (a stamp file in venv/ remembers their hash).
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


def _requirement_files(with_tests: bool) -> list[str]:
    names = ["requirements.txt"] + (["requirements-test.txt"] if with_tests else [])
    return [os.path.join(ROOT, name) for name in names]


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
    wanted = _digest(files)
    installed = open(STAMP).read().strip() if os.path.exists(STAMP) else ""
    if installed != wanted:
        print("Installing requirements (first run takes a while)")
        command = [VENV_PYTHON, "-m", "pip", "install", "--disable-pip-version-check"]
        for path in files:
            command += ["-r", path]
        subprocess.check_call(command)
        with open(STAMP, "w") as file:
            file.write(wanted)


def in_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def main() -> None:
    argv = sys.argv[1:]
    skip = "--skip-install" in argv or "--skip-prepare-environment" in argv
    with_tests = "--with-tests" in argv
    argv = [a for a in argv if a != "--with-tests"]
    if not skip:
        prepare_environment(with_tests)
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
