"""install.py of extensions: run with the venv's Python and `import launch`, only when new or
changed, pip held to the program's pins; failures reported with the extension's name."""
import os
import subprocess
import sys

from modules.extension_loading import installer, pip_install
from tests.extension_helpers import build_wheel, install_fixture


def _run(data_dir):
    return installer.run_extension_installers(str(data_dir), str(data_dir / "config.json"),
                                              str(data_dir / "cache.json"))


def test_install_py_pip_installs_a_local_wheel_once_and_again_after_a_change(tmp_path, monkeypatch):
    data = tmp_path / "data"
    ext = install_fixture(data, "pip-adds-package")
    wheels, target, runs = tmp_path / "wheels", tmp_path / "target", tmp_path / "runs.log"
    build_wheel(wheels)
    monkeypatch.setenv("TINY_WHEELS_DIR", str(wheels))
    monkeypatch.setenv("TINY_TARGET_DIR", str(target))
    monkeypatch.setenv("TINY_RUNS_LOG", str(runs))
    report = _run(data)
    assert report == ["Extension pip-adds-package: install.py finished"]
    assert (target / "tiny_ext_pkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert _run(data) == [] and runs.read_text() == "pip-adds-package\n"  # unchanged: not run again
    with open(os.path.join(ext, "requirements.txt"), "w") as file:
        file.write("tiny-ext-pkg\n")
    assert _run(data) == ["Extension pip-adds-package: install.py finished"]
    assert runs.read_text().count("pip-adds-package") == 2


def test_a_pinned_package_cannot_be_replaced(tmp_path):
    data = tmp_path / "data"
    install_fixture(data, "pip-pin-conflict")
    pinned = pip_install.pinned_versions()["transformers"]
    report = _run(data)
    assert len(report) == 1
    assert report[0].startswith("Extension pip-pin-conflict: install.py failed (")
    assert f"package transformers (transformers<5) conflicts with the program's pinned transformers=={pinned}" \
        in report[0]
    assert "the environment is unchanged" in report[0]
    import transformers
    assert transformers.__version__ == pinned
    assert "pip-pin-conflict" not in open(data / "cache.json").read()  # failed: it will run again


def test_conflict_check_reads_pins_and_specifiers():
    pins = {"transformers": "5.23.0", "numpy": "2.3.5"}
    assert pip_install.conflicts(["transformers<5", "numpy>=2", "rich==13"], pins) == [
        "package transformers (transformers<5) conflicts with the program's pinned transformers==5.23.0"]
    assert pip_install.conflicts(["-U", "--index-url", "numpy<2", "numpy"], pins) == []  # option values skipped
    assert pip_install.conflicts(["Numpy_<2"], {"numpy-": "2"}) != []


def test_a_dependency_that_conflicts_with_a_pin_is_refused_by_the_resolver(tmp_path):
    # a wheel that needs numpy<2: only pip's resolver (with our constraints) can see it; dry run, no index
    wheels = tmp_path / "wheels"
    build_wheel(wheels, name="needs-old-numpy", requires=["numpy<2"])
    code = ("import launch\n"
            f"launch.run_pip('install --dry-run --no-index --find-links {wheels} needs-old-numpy', 'x')\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=root, WEBUI_EXTENSION_NAME="old-numpy-ext"))
    assert result.returncode != 0
    assert "Extension old-numpy-ext: pip install --dry-run conflicts with the program's pinned packages" \
        in result.stderr


def test_failing_install_py_is_reported_and_others_still_run(tmp_path, monkeypatch):
    data = tmp_path / "data"
    install_fixture(data, "raising-ext")
    install_fixture(data, "pip-adds-package")
    monkeypatch.setenv("TINY_WHEELS_DIR", str(build_wheel(tmp_path / "w") and tmp_path / "w"))
    monkeypatch.setenv("TINY_TARGET_DIR", str(tmp_path / "t"))
    monkeypatch.setenv("TINY_RUNS_LOG", str(tmp_path / "runs.log"))
    report = _run(data)
    assert report == ["Extension pip-adds-package: install.py finished",
                      "Extension raising-ext: install.py failed (raising-ext: install.py fails on purpose); "
                      "the program starts without its packages"]


def test_disabled_extensions_and_flags_skip_installers(tmp_path):
    data = tmp_path / "data"
    install_fixture(data, "raising-ext")
    (data / "config.json").write_text('{"disabled_extensions": ["raising-ext"]}')
    assert _run(data) == []
    (data / "config.json").write_text('{"disable_all_extensions": "extra"}')
    assert _run(data) == []
    assert installer.run_extension_installers(str(data), str(data / "none.json"), str(data / "cache.json"),
                                              disable_extra=True) == []
