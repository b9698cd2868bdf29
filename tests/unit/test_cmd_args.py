import pytest

from modules import cmd_args


def test_defaults_and_a1111_command_lines():
    args = cmd_args.parse_args([])
    assert (args.listen, args.port, args.api, args.nowebui, args.precision) == (False, None, False, False, "autocast")
    args = cmd_args.parse_args("--listen --port 7860 --api --api-auth alice:secret --gradio-auth alice:secret".split())
    assert args.listen and args.port == 7860 and args.api and args.api_auth == "alice:secret"
    args = cmd_args.parse_args("--medvram --xformers --no-half-vae --ckpt models/x.safetensors".split())
    assert args.medvram and args.no_half_vae and args.ckpt.endswith("models/x.safetensors")
    args = cmd_args.parse_args("--use-cpu all --precision full --no-half --skip-torch-cuda-test".split())
    assert args.use_cpu == ["all"] and args.precision == "full" and args.no_half


def test_paths_become_absolute_and_prefixes_work():
    args = cmd_args.parse_args(["--data-dir", "rel/data", "--lyco-dir", "ly"])
    assert args.data_dir.startswith("/") and args.data_dir.endswith("rel/data")
    assert args.lyco_dir_backcompat.endswith("/ly")


def test_unknown_flag_is_an_error(capsys, monkeypatch):
    monkeypatch.delenv("IGNORE_CMD_ARGS_ERRORS", raising=False)
    with pytest.raises(SystemExit):
        cmd_args.parse_args(["--no-such-flag"])
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_unknown_flag_ignored_on_request_and_env_args(monkeypatch):
    monkeypatch.setenv("IGNORE_CMD_ARGS_ERRORS", "1")
    monkeypatch.setenv("COMMANDLINE_ARGS", "--api --port 9000")
    args = cmd_args.parse_args(["--no-such-flag"])
    assert args.api and args.port == 9000


def test_notices_for_flags_we_cannot_honour():
    notices = cmd_args.notices_for(cmd_args.parse_args(["--ngrok", "tok", "--update-check"]))
    assert any(n.startswith("--ngrok:") for n in notices) and any(n.startswith("--update-check:") for n in notices)
