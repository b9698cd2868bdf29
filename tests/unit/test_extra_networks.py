"""Tests for modules/extra_networks.py (docs spec prompt-syntax.md §4)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modules import extra_networks
from modules.extra_networks import ExtraNetwork, ExtraNetworkParams, parse_prompt, parse_prompts


@pytest.fixture(autouse=True)
def clean_registry():
    saved = dict(extra_networks.extra_network_registry), dict(extra_networks.extra_network_aliases)
    extra_networks.initialize()
    yield
    extra_networks.initialize()
    extra_networks.extra_network_registry.update(saved[0])
    extra_networks.extra_network_aliases.update(saved[1])


def items(data):
    return {kind: [params.items for params in params_list] for kind, params_list in data.items()}


@pytest.mark.parametrize("prompt,expected_prompt,expected", [
    ("a cat <lora:inkwash:0.7>, sitting", "a cat , sitting", {"lora": [["inkwash", "0.7"]]}),
    ("<lora:a:1><hypernet:h>x", "x", {"lora": [["a", "1"]], "hypernet": [["h"]]}),
    ("<lora:a:1> <lora:b:0.5>", " ", {"lora": [["a", "1"], ["b", "0.5"]]}),
    ("[<lora:a:1>:<lora:b:1>:0.5]", "[::0.5]", {"lora": [["a", "1"], ["b", "1"]]}),  # §4: tags go first
    ("(<lora:a:1>:1.2)", "(:1.2)", {"lora": [["a", "1"]]}),
    ("x AND <lora:a> y", "x AND  y", {"lora": [["a"]]}),
    ("<lora:>", "<lora:>", {}),  # ARGS needs at least one character
    ("<:a>", "<:a>", {}),  # NAME needs at least one word character
    ("<lo-ra:a>", "<lo-ra:a>", {}),
    ("<lora a>", "<lora a>", {}),
    ("a < b > c", "a < b > c", {}),
    ("<lora:a:b:c=1:d=2=3>", "", {"lora": [["a", "b", "c=1", "d=2=3"]]}),
    ("<lora:name with spaces:0.5>", "", {"lora": [["name with spaces", "0.5"]]}),
    ("<lora:a<b:1>", "", {"lora": [["a<b", "1"]]}),
    ("<lora:a:1", "<lora:a:1", {}),
    ("<Lora_2:x>", "", {"Lora_2": [["x"]]}),
    ("", "", {}),
])
def test_parse_prompt(prompt, expected_prompt, expected):
    text, data = parse_prompt(prompt)
    assert text == expected_prompt
    assert items(data) == expected


@pytest.mark.parametrize("tag,positional,named", [
    ("<lora:inkwash>", ["inkwash"], {}),
    ("<lora:inkwash:0.7>", ["inkwash", "0.7"], {}),
    ("<lora:inkwash:1:0.3>", ["inkwash", "1", "0.3"], {}),
    ("<lora:inkwash:unet=0.5>", ["inkwash"], {"unet": "0.5"}),
    ("<lora:inkwash:0.8:te=0.2>", ["inkwash", "0.8"], {"te": "0.2"}),
    ("<lora:inkwash:0.8:0.4:16>", ["inkwash", "0.8", "0.4", "16"], {}),
    ("<lora:x:a=b=c>", ["x", "a=b=c"], {}),  # exactly one `=` makes a named argument
    ("<lora:x:=1>", ["x"], {"": "1"}),
])
def test_positional_and_named_arguments(tag, positional, named):
    _, data = parse_prompt(tag)
    params = data["lora"][0]
    assert params.positional == positional
    assert params.named == named


def test_params_equality_and_defaults():
    assert ExtraNetworkParams(["a", "1"]) == ExtraNetworkParams(["a", "1"])
    assert ExtraNetworkParams(["a", "1"]) != ExtraNetworkParams(["a", "2"])
    assert ExtraNetworkParams() == ExtraNetworkParams([])
    empty = ExtraNetworkParams()
    assert (empty.items, empty.positional, empty.named) == ([], [], {})


def test_parse_prompts_takes_networks_from_first_prompt():
    prompts, data = parse_prompts(["a <lora:x:1>", "b <lora:y:1> <hypernet:h>", "c"])
    assert prompts == ["a ", "b  ", "c"]
    assert items(data) == {"lora": [["x", "1"]]}


def test_parse_prompts_empty():
    prompts, data = parse_prompts([])
    assert prompts == [] and dict(data) == {}


class Recorder(ExtraNetwork):
    def __init__(self, name, log, fail=False):
        super().__init__(name)
        self.log = log
        self.fail = fail

    def activate(self, p, params_list):
        self.log.append(("activate", self.name, [x.items for x in params_list]))
        if self.fail:
            raise RuntimeError("broken network")

    def deactivate(self, p):
        self.log.append(("deactivate", self.name))


class FakeP:
    def __init__(self):
        self.comments = {}

    def comment(self, text):
        self.comments[text] = 1


def test_lookup_reports_unknown_kinds_and_merges_aliases():
    log = []
    lora = Recorder("lora", log)
    extra_networks.register_extra_network(lora)
    extra_networks.register_extra_network_alias(lora, "lyco")
    _, data = parse_prompt("<lyco:a:1> <foo:z> <lora:b> <bar:q>")

    known, unknown = extra_networks.lookup_extra_networks(data)
    assert list(known) == [lora]
    assert [x.items for x in known[lora]] == [["a", "1"], ["b"]]
    assert unknown == ["foo", "bar"]


def test_activate_and_deactivate_call_every_registered_network():
    log = []
    lora = Recorder("lora", log)
    hyper = Recorder("hypernet", log)
    extra_networks.register_extra_network(hyper)
    extra_networks.register_extra_network(lora)
    _, data = parse_prompt("<lora:a:0.5> <mystery:x>")
    p = FakeP()

    assert extra_networks.activate(p, data) == ["mystery"]
    assert log == [("activate", "lora", [["a", "0.5"]]), ("activate", "hypernet", [])]
    assert p.comments == {"Unknown network type: mystery": 1}

    log.clear()
    extra_networks.deactivate(p, data)
    assert log == [("deactivate", "lora"), ("deactivate", "hypernet")]


def test_a_failing_network_does_not_stop_the_others(caplog):
    log = []
    extra_networks.register_extra_network(Recorder("bad", log, fail=True))
    extra_networks.register_extra_network(Recorder("good", log))
    _, data = parse_prompt("<bad:x> <good:y>")
    extra_networks.activate(object(), data)  # also: p without comment() is fine
    assert [entry[1] for entry in log] == ["bad", "good"]
    assert "activating extra network bad" in caplog.text


def test_base_class_methods_must_be_implemented():
    network = ExtraNetwork("x")
    with pytest.raises(NotImplementedError):
        network.activate(None, [])
    with pytest.raises(NotImplementedError):
        network.deactivate(None)


def test_get_user_metadata(tmp_path):
    model = tmp_path / "sub" / "style.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"")
    assert extra_networks.get_user_metadata(str(model)) == {}
    assert extra_networks.get_user_metadata(None) == {}

    (tmp_path / "sub" / "style.json").write_text(json.dumps({"activation text": "inkwash"}), encoding="utf8")
    assert extra_networks.get_user_metadata(str(model)) == {"activation text": "inkwash"}

    (tmp_path / "sub" / "style.json").write_text("{not json", encoding="utf8")
    assert extra_networks.get_user_metadata(str(model)) == {}


def test_module_import_is_light():
    code = "import sys, modules.extra_networks; print('torch' in sys.modules)"
    repo_root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root)
    assert out.stdout.strip() == "False"
