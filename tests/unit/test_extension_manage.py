"""Extensions tab logic: install from a folder or .zip (install.py runs), refusals, the access
check, saving the enabled list, and the network paths answering "offline" quickly."""
import dataclasses
import json
import os
import time
import zipfile

import pytest

from modules import extensions
from modules.extension_loading import manage
from tests.extension_helpers import FIXTURES


@pytest.fixture
def data(webui_session, tmp_path, monkeypatch):
    shared = webui_session
    monkeypatch.setattr(shared, "paths", dataclasses.replace(
        shared.paths, data=str(tmp_path), settings_file=str(tmp_path / "config.json"),
        cache_file=str(tmp_path / "cache.json")))
    monkeypatch.setitem(shared.opts.data, "disabled_extensions", [])
    monkeypatch.setitem(shared.opts.data, "disable_all_extensions", "none")
    yield tmp_path
    extensions.extensions.clear()


def test_install_from_folder_then_refuse_the_same_name(data):
    report = manage.install_from_path(os.path.join(FIXTURES, "wildcards-lite"))
    assert report.startswith(f"Installed wildcards-lite into {data / 'extensions' / 'wildcards-lite'}.")
    assert (data / "extensions" / "wildcards-lite" / "wildcards" / "animal.txt").exists()
    assert [e.name for e in extensions.extensions if not e.is_builtin] == ["wildcards-lite"]
    with pytest.raises(manage.ExtensionError, match="Extension folder wildcards-lite already exists"):
        manage.install_from_path(os.path.join(FIXTURES, "wildcards-lite"))


def test_install_from_zip_with_one_top_folder_runs_install_py(data, tmp_path_factory):
    archive = tmp_path_factory.mktemp("zips") / "failing-main.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("raising-ext-main/install.py", "print('hello from install.py')\n")
        z.writestr("raising-ext-main/scripts/x.py", "")
    report = manage.install_from_path(str(archive))
    assert "Installed failing into" in report
    assert "install.py finished:\nhello from install.py" in report
    assert (data / "extensions" / "failing" / "scripts" / "x.py").exists()
    assert "failing" in json.loads((data / "cache.json").read_text())["extensions-installed"]


def test_zip_with_paths_outside_is_refused(data, tmp_path_factory):
    archive = tmp_path_factory.mktemp("zips") / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../outside.py", "")
    with pytest.raises(manage.ExtensionError, match="outside its folder"):
        manage.install_from_path(str(archive))
    assert not (data / "extensions" / "evil").exists() and not (data / "outside.py").exists()
    with pytest.raises(manage.ExtensionError, match="does not exist"):
        manage.install_from_path(str(data / "nothing-here"))


def test_save_enabled_and_access_check(data, webui_session, monkeypatch):
    manage.install_from_path(os.path.join(FIXTURES, "wildcards-lite"))
    manage.install_from_path(os.path.join(FIXTURES, "hook-recorder"))
    assert manage.save_enabled(["hook-recorder", "soft-inpainting"]) == ["wildcards-lite"]
    assert json.loads((data / "config.json").read_text())["disabled_extensions"] == ["wildcards-lite"]
    assert {e.name: e.enabled for e in extensions.list_extensions()} == \
        {"hook-recorder": True, "wildcards-lite": False, "soft-inpainting": True}
    monkeypatch.setattr(webui_session.cmd_opts, "listen", True)
    with pytest.raises(manage.ExtensionError, match="--enable-insecure-extension-access"):
        manage.save_enabled([])
    with pytest.raises(manage.ExtensionError, match="--enable-insecure-extension-access"):
        manage.install_from_path(os.path.join(FIXTURES, "raising-ext"))
    monkeypatch.setattr(webui_session.cmd_opts, "enable_insecure_extension_access", True)
    assert manage.save_enabled([]) == ["soft-inpainting", "hook-recorder", "wildcards-lite"]  # built-ins first


def test_network_paths_say_offline_without_hanging(data):
    started = time.time()
    for call in (lambda: manage.load_index("https://raw.githubusercontent.com/x/y/master/index.json"),
                 lambda: manage.install_from_url("https://github.com/someone/some-extension.git")):
        with pytest.raises(manage.ExtensionError, match="this machine appears to be offline"):
            call()
    assert time.time() - started < 2 * (manage.REACH_TIMEOUT + 1) + 2
    assert not (data / "extensions" / "some-extension").exists()
