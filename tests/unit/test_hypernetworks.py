"""Hypernetworks (networks.md §7, §11.2): the .pt format, the MLP architecture, and to_k / to_v
inputs `c + m·MLP(c)` in cross- and self-attention while the tag is active."""
import pytest
import torch

from modules import extra_networks, processing, sd_models
from modules.networks import hypernetworks
from tests import lora_fixtures as lf


@pytest.fixture
def sd1(webui_session, data_dir):
    shared = webui_session
    info = sd_models.find_checkpoint("tiny-sd1")
    model = shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    folder = data_dir / "models" / "hypernetworks"
    folder.mkdir(parents=True, exist_ok=True)
    data = lf.hypernetwork_dict((32, 16), seed=1, name="tiny")
    torch.save(data, str(folder / "tiny.pt"))
    hypernetworks.list_hypernetworks()
    return shared, model, data


def test_file_round_trip(sd1, tmp_path):
    _, _, data = sd1
    hn = hypernetworks.load_hypernetwork_file(hypernetworks.hypernetworks["tiny"])
    for width in (32, 16):
        for which in (0, 1):
            loaded = hn.layers[width][which].state_dict()
            assert set(loaded) == set(data[width][which])
            assert all(torch.equal(loaded[k], data[width][which][k]) for k in loaded)
    hn.save(str(tmp_path / "again.pt"))
    again = hypernetworks.load_hypernetwork_file(str(tmp_path / "again.pt"))
    for width in (32, 16):
        for which in (0, 1):
            a, b = again.layers[width][which].state_dict(), hn.layers[width][which].state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.layer_structure == [1, 2, 1] and again.activation_func == "linear"


def test_architecture_indices_follow_the_layer_sequence():
    # [1, 2, 1] + relu, no output activation, layer norm: Linear, ReLU, LayerNorm, Linear, LayerNorm
    module = hypernetworks.HypernetworkModule(8, layer_structure=[1, 2, 1], activation_func="relu",
                                              add_layer_norm=True, activate_output=False)
    kinds = [type(m).__name__ for m in module.linear]
    assert kinds == ["Linear", "ReLU", "LayerNorm", "Linear", "LayerNorm"]
    swish = hypernetworks.HypernetworkModule(8, activation_func="swish", dropout_structure=[0, 0.3, 0])
    assert [type(m).__name__ for m in swish.linear] == ["Linear", "Hardswish", "Dropout", "Linear", "Hardswish"]
    with pytest.raises(hypernetworks.HypernetworkError):
        hypernetworks.HypernetworkModule(8, activation_func="nosuch")


@torch.no_grad()
def test_to_k_and_to_v_inputs_in_cross_and_self_attention(sd1):
    shared, model, data = sd1
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x")
    handler = extra_networks.extra_network_registry["hypernet"]
    shared.job_queue.run(lambda: handler.activate(p, [extra_networks.ExtraNetworkParams(["tiny", "0.6"])]))
    try:
        block = model.unet.down_blocks[0].attentions[0].transformer_blocks[0]
        seen = {}
        handles = [getattr(block, attn).to_k.register_forward_pre_hook(
            lambda m, a, n=attn: seen.__setitem__((n, "k"), a[0])) for attn in ("attn1", "attn2")]
        handles += [getattr(block, attn).to_v.register_forward_pre_hook(
            lambda m, a, n=attn: seen.__setitem__((n, "v"), a[0])) for attn in ("attn1", "attn2")]
        hidden = torch.randn(1, 6, 16)
        context = torch.randn(1, 5, 32)
        block.attn1(hidden)
        block.attn2(hidden, encoder_hidden_states=context)
        for handle in handles:
            handle.remove()
    finally:
        shared.job_queue.run(lambda: handler.deactivate(p))
    for which, index in (("k", 0), ("v", 1)):
        expected_self = lf.hypernetwork_reference(data[16][index], hidden, 0.6)
        expected_cross = lf.hypernetwork_reference(data[32][index], context, 0.6)
        assert (seen["attn1", which] - expected_self).abs().max() <= 1e-5
        assert (seen["attn2", which] - expected_cross).abs().max() <= 1e-5
    # hooks are gone after the batch
    assert not block.attn2.to_k._forward_pre_hooks


def test_old_hypernet_infotext_becomes_a_tag(webui_session):
    from modules.api.outputs_routes import parse_infotext_with_settings
    params = parse_infotext_with_settings("knight\nSteps: 40, Sampler: PLMS, Seed: 12, Hypernet: inkstyle")
    assert params["Prompt"] == "knight<hypernet:inkstyle:1.0>"
