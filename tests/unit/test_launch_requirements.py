"""launch.py's install plan: the pinned requirements in one pip run, then the no-deps list alone
with --no-deps; the stamp's hash covers the no-deps list too (editing it reinstalls)."""
import launch


def test_nodeps_list_is_installed_last_without_dependencies(tmp_path):
    files = launch._requirement_files(with_tests=True)
    main, nodeps = launch._install_commands(files)
    assert main[-4:] == ["-r", files[0], "-r", files[1]] and "--no-deps" not in main
    assert nodeps[-3:] == ["--no-deps", "-r", launch.NODEPS_REQUIREMENTS]
    assert nodeps[:4] == main[:4]  # the venv's pip, same options


def test_nodeps_list_pins_controlnet_aux_and_is_in_the_stamp_hash(tmp_path, monkeypatch):
    lines = [line.strip() for line in open(launch.NODEPS_REQUIREMENTS) if line.strip() and not line.startswith("#")]
    assert lines == ["controlnet_aux==0.0.10"]
    calls = []
    monkeypatch.setattr(launch, "VENV_PYTHON", launch.sys.executable)  # exists: no venv is created
    monkeypatch.setattr(launch, "STAMP", str(tmp_path / "stamp"))
    monkeypatch.setattr(launch.subprocess, "check_call", calls.append)
    launch.prepare_environment()
    files = launch._requirement_files(with_tests=False)
    assert calls == launch._install_commands(files)
    assert (tmp_path / "stamp").read_text() == launch._digest(files + [launch.NODEPS_REQUIREMENTS])
    assert launch._digest(files + [launch.NODEPS_REQUIREMENTS]) != launch._digest(files)
    launch.prepare_environment()  # the stamp matches: nothing runs again
    assert len(calls) == 2
