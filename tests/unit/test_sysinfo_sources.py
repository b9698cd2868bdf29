"""Sysinfo's "Exceptions" and "Extensions" parts come from what the program keeps (issue 14): the
errors it recorded (newest first, the last five) and the extension loader's list, split into
enabled and disabled, with git branch/commit where the folder is a repository."""
import json
import subprocess

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import cmd_args, errors, extensions
from modules.api import server_routes
from modules.settings import sysinfo


@pytest.fixture
def client(webui_session):
    app = FastAPI()
    server_routes.register(app, cmd_args.parse_args(["--api"]))
    return TestClient(app)


@pytest.fixture
def no_records(monkeypatch):
    monkeypatch.setattr(errors, "exception_records", [])


def _fail_deep(text):
    raise RuntimeError(text)


def test_a_reported_error_appears_in_internal_sysinfo_with_its_traceback(client, no_records):
    try:
        _fail_deep("boom from the test")
    except RuntimeError:
        errors.report("Error while testing", exc_info=True)
    text = client.get("/internal/sysinfo").text
    assert sysinfo.check(text)
    newest = json.loads(text)["Exceptions"][0]
    assert newest["exception"] == "boom from the test"
    locations = [frame[0] for frame in newest["traceback"]]
    assert locations[-1].endswith(f"test_sysinfo_sources.py, line {_fail_deep.__code__.co_firstlineno + 1}, _fail_deep")
    assert newest["traceback"][-1][1] == "raise RuntimeError(text)"


def test_records_keep_the_last_five_newest_first_and_one_error_counts_once(no_records):
    for n in range(7):
        try:
            _fail_deep(f"error {n}")
        except RuntimeError as e:
            errors.report("first report", exc_info=True)
            errors.display(e, "testing")  # the same error shown again is not a second record
    assert [record["exception"] for record in sysinfo.get_dict()["Exceptions"]] == \
        ["error 6", "error 5", "error 4", "error 3", "error 2"]


def test_an_unexpected_api_error_is_recorded(no_records):
    from modules.api import api
    with pytest.raises(ZeroDivisionError):
        try:
            1 / 0
        except ZeroDivisionError as e:
            api._raise_for(e)
    assert errors.get_exceptions()[0]["exception"] == "division by zero"


def test_extensions_are_listed_from_the_loader_enabled_and_disabled(webui_session, tmp_path, monkeypatch):
    repo = tmp_path / "sd-webui-example"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "feature"], check=True)
    (repo / "scripts.txt").write_text("x")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    from_git = extensions.Extension("sd-webui-example", str(repo), enabled=True)
    switched_off = extensions.Extension("sd-webui-off", str(tmp_path / "off"), enabled=False)
    monkeypatch.setattr(extensions, "extensions", [*extensions.extensions, from_git, switched_off])
    data = sysinfo.get_dict()
    active = {item["name"]: item for item in data["Extensions"]}
    inactive = {item["name"]: item for item in data["Inactive extensions"]}
    assert set(active) == {ext.name for ext in extensions.extensions if ext.enabled}
    assert set(inactive) == {ext.name for ext in extensions.extensions if not ext.enabled}
    builtin = [ext for ext in extensions.extensions if ext.is_builtin]
    assert all((active if ext.enabled else inactive)[ext.name]["builtin"] is True for ext in builtin)
    assert active["sd-webui-example"] == {"name": "sd-webui-example", "path": str(repo), "builtin": False,
                                          "commit": commit, "branch": "feature", "remote": None}
    assert inactive["sd-webui-off"]["commit"] is None and inactive["sd-webui-off"]["branch"] is None
