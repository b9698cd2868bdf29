"""Shared fixtures: no network, tiny checkpoints in a throw-away data folder, a real server process."""
import ipaddress
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The suite runs in two pytest workers on two cores, next to server processes and Chromium: one
# torch thread per process keeps them from starving each other (tiny models gain nothing from more).
os.environ.setdefault("OMP_NUM_THREADS", "1")

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    """Any connection that leaves this machine is a bug in a test or in the program."""
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise RuntimeError(f"network access attempted in tests: {address}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only

FAMILIES = ("sd1", "sd1-inpaint", "sd1-pix2pix", "sd2-v", "sdxl", "sdxl-inpaint", "sdxl-refiner")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data folder with one tiny checkpoint of each family in models/Stable-diffusion."""
    from modules.tiny_models import write_tiny_checkpoint
    root = tmp_path_factory.mktemp("data")
    ckpt_dir = root / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    for family in FAMILIES:
        write_tiny_checkpoint(family, ckpt_dir / f"tiny-{family}.safetensors", seed=0)
    return root


@pytest.fixture(scope="session")
def webui_session(data_dir):
    """The program initialised in this process on the tiny-model data folder (no server)."""
    import webui
    from modules import cmd_args, shared
    args = cmd_args.parse_args(["--data-dir", str(data_dir), "--api"])
    webui.initialize(args)
    shared.opts.set("sd_model_checkpoint", None, run_callbacks=False)
    return shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(str(data_dir), f"server-{self.port}.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "webui.py"), "--data-dir", str(data_dir),
             "--port", str(self.port), *flags],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_ready(self, path="/internal/ping", timeout=120, auth=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if requests.get(self.url + path, timeout=2, auth=auth).status_code < 500:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as file:
            return file.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server(data_dir):
    """A real server (UI + API) on 127.0.0.1 over the tiny-model data folder."""
    proc = ServerProcess(data_dir, "--api")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "full_ui: a long browser test whose behaviour other tests also "
                                       "cover; runs only with FULL_UI_TESTS=1 (keeps CI in its time budget)")


def pytest_collection_modifyitems(config, items):
    """Browser tests run one after another in one pytest worker (two pages loading at once starve
    each other on two cores); every other file is one unit of work for the second worker."""
    full_ui = os.environ.get("FULL_UI_TESTS") == "1"
    for item in items:
        browser = "tests/browser/" in item.nodeid
        item.add_marker(pytest.mark.xdist_group("browser" if browser else item.nodeid.split("::")[0]))
        if item.get_closest_marker("full_ui") and not full_ui:
            item.add_marker(pytest.mark.skip(reason="long browser test: set FULL_UI_TESTS=1 to run it"))
