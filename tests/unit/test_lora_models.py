"""LoRA on every model a job runs: a refiner taking over mid-pass, the hires checkpoint (its own
prompt's networks, or the first pass's with hires_fix_use_firstpass_conds), and weights offloaded by
accelerate (--lowvram). The weight each model sees during its forward is checked against the LoRA
formula, and every model is bit-identical to its file afterwards."""
import copy

import pytest
import torch

from modules import sd_models
from modules.models.loader import load_checkpoint
from modules.networks import lora
from modules.tiny_models import build_tiny_models, write_tiny_checkpoint
from tests import lora_fixtures as lf
from tests.unit.test_lora import activate, assert_same, run, snapshot, use, write

UNET_LAYER = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
TE_LAYER = "encoder.layers.0.self_attn.q_proj"


@pytest.fixture
def second_sd1(webui_session, tmp_path):
    """Another tiny SD1 checkpoint (other weights, same layout), findable by name for this test only."""
    path = tmp_path / "tiny-sd1-other.safetensors"
    write_tiny_checkpoint("sd1", path, seed=1)
    info = sd_models.CheckpointInfo(str(path), str(tmp_path))
    sd_models._register_aliases(info)
    yield info
    sd_models.list_models()  # back to the folders' own listing


def layer(part, path):
    return dict(part.named_modules())[path]


def spy_on_switches(monkeypatch, shared):
    """Record, for every model the job switches to, the weights its forward sees."""
    seen = []
    original = shared.model_holder.switch_to

    def switch_to(info):
        model = original(info)
        entry = {"name": info.name_for_extra, "model": model}
        seen.append(entry)
        unet_layer, te_layer = layer(model.unet, UNET_LAYER), layer(model.text_encoders[0], TE_LAYER)
        def record(key):
            def hook(module, _args):  # returns None: the layer's input stays as it is
                entry.setdefault(key, module.weight.detach().clone())
            return hook
        unet_layer.register_forward_pre_hook(record("unet"))
        te_layer.register_forward_pre_hook(record("te"))
        return model
    monkeypatch.setattr(shared.model_holder, "switch_to", switch_to)
    return seen


def factors_by_path(model, factors):
    unet_paths = {m: p for p, m in model.unet.named_modules()}
    te_paths = {m: p for p, m in model.text_encoders[0].named_modules()}
    by_path = {}
    for module, value in factors.items():
        if module in unet_paths:
            by_path["unet", unet_paths[module]] = value
        elif module in te_paths:
            by_path["te", te_paths[module]] = value
    return by_path


def assert_equals_file(model, info):
    """Every weight of `model` equal to the checkpoint file's (nothing left patched)."""
    fresh = load_checkpoint(info.filename)
    for mine, theirs in ((model.unet, fresh.unet), *zip(model.text_encoders, fresh.text_encoders)):
        reference = theirs.state_dict()
        for key, value in mine.state_dict().items():
            assert torch.equal(value, reference[key].to(value.dtype)), key


def expected(model, by_path, which, path, multiplier):
    part = model.unet if which == "unet" else model.text_encoders[0]
    up, down, alpha = by_path[which, path]
    return lf.lora_reference(layer(part, path).weight.detach(), up, down, alpha, multiplier)


def close(a, b):
    return (a.float() - b).abs().max().item() <= 1e-6 * max(1.0, b.abs().max().item())


def test_refiner_taking_over_gets_the_networks(webui_session, data_dir, monkeypatch, second_sd1):
    shared = webui_session
    base = use(shared, "sd1")
    state, factors = lf.random_lora(base, seed=31)
    write(data_dir, "follow", state)
    by_path = factors_by_path(base, factors)
    base_before = snapshot(base)
    seen = spy_on_switches(monkeypatch, shared)
    processed = run(shared, prompt="a cat <lora:follow:0.7>", steps=4, refiner_checkpoint=second_sd1.name,
                    refiner_switch_at=0.5)
    refiner = next(e for e in seen if e["name"] == "tiny-sd1-other")
    model = refiner["model"]
    # after the job the refiner is restored: its weights now are the original ones of the formula
    assert close(refiner["unet"], expected(model, by_path, "unet", UNET_LAYER, 0.7))
    assert close(refiner["te"], expected(model, by_path, "te", TE_LAYER, 0.7))
    assert_equals_file(model, second_sd1)
    assert_same(base, base_before)
    assert "Refiner switch at: 0.5" in processed.infotexts[0]
    assert "Lora" not in (processed.comments or "")  # every key found its layer on the refiner too


def test_refiner_of_another_family_refuses_with_a_comment(webui_session, data_dir):
    shared = webui_session
    base = use(shared, "sd1")
    state, _ = lf.random_lora(base, seed=32)
    write(data_dir, "family", state, metadata={"ss_base_model_version": "sd_v1"})
    processed = run(shared, prompt="a cat <lora:family:0.7>", steps=4, refiner_checkpoint="tiny-sd2-v",
                    refiner_switch_at=0.5)
    refiner = sd_models.find_checkpoint("tiny-sd2-v")
    assert (f"Lora not applied, made for another model family: family (SD1 network, SD2 model) "
            f"(on {refiner.short_title})") in processed.comments


@pytest.mark.parametrize("firstpass_conds", [False, True])
def test_hires_checkpoint_gets_the_right_prompts_networks(webui_session, data_dir, monkeypatch, second_sd1,
                                                          firstpass_conds):
    shared = webui_session
    base = use(shared, "sd1")
    first_state, first_factors = lf.random_lora(base, seed=33)
    hires_state, hires_factors = lf.random_lora(base, seed=34)
    write(data_dir, "first", first_state)
    write(data_dir, "second", hires_state)
    base_before = snapshot(base)
    seen = spy_on_switches(monkeypatch, shared)
    processed = run(shared, prompt="a cat <lora:first:0.7>", steps=2, enable_hr=True, hr_scale=1.5,
                    hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=2,
                    hr_checkpoint_name=second_sd1.name, hr_prompt="a dog <lora:second:0.4>",
                    override_settings={"hires_fix_use_firstpass_conds": firstpass_conds})
    hires = next(e for e in seen if e["name"] == "tiny-sd1-other")
    model = hires["model"]
    if firstpass_conds:  # the first pass's prompts, so the first pass's networks, on both parts
        by_path = factors_by_path(base, first_factors)
        assert close(hires["unet"], expected(model, by_path, "unet", UNET_LAYER, 0.7))
        assert "te" not in hires or close(hires["te"], expected(model, by_path, "te", TE_LAYER, 0.7))
    else:
        by_path = factors_by_path(base, hires_factors)
        assert close(hires["unet"], expected(model, by_path, "unet", UNET_LAYER, 0.4))
        assert close(hires["te"], expected(model, by_path, "te", TE_LAYER, 0.4))
    assert_equals_file(model, second_sd1)
    assert_same(base, base_before)
    assert processed.images[0].size == (96, 96)


def test_lowvram_offloaded_weights_are_patched_and_restored(webui_session, data_dir):
    """accelerate's sequential offload (--lowvram) keeps the real weights in its hooks' weights map and
    empty `meta` parameters on the layers: the LoRA must land where the forward reads from."""
    from accelerate import cpu_offload

    shared = webui_session
    use(shared, "sd1")
    built = shared.job_queue.run(lambda: build_tiny_models("sd1", seed=5))

    class Model:
        family = "sd1"

    plain, offloaded = Model(), Model()
    plain.unet, plain.text_encoders = built["unet"], built["text_encoders"]
    offloaded.unet, offloaded.text_encoders = copy.deepcopy(built["unet"]), built["text_encoders"]
    originals = {k: v.clone() for k, v in offloaded.unet.state_dict().items()}
    shared.job_queue.run(lambda: cpu_offload(offloaded.unet, execution_device=torch.device("cpu")))
    assert layer(offloaded.unet, UNET_LAYER).weight.device.type == "meta"
    state, _ = lf.random_lora(plain, seed=35, te=False)
    write(data_dir, "offload", state)

    g = torch.Generator().manual_seed(0)
    x, t, c = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([500]), torch.randn(1, 77, 32, generator=g)

    def forward(model):
        with torch.no_grad():
            return model.unet(x, t, encoder_hidden_states=c).sample

    def with_lora(model):
        report = lora.load_networks(["offload"], [0.8], [0.8], [None], model=model)
        assert not report.errors and not report.unmatched
        try:
            return forward(model)
        finally:
            lora.restore_all()

    unpatched = shared.job_queue.run(lambda: forward(offloaded))
    expected_out = shared.job_queue.run(lambda: with_lora(plain))
    got = shared.job_queue.run(lambda: with_lora(offloaded))
    assert torch.equal(got, expected_out)
    assert not torch.allclose(got, unpatched)
    hook_weights = layer(offloaded.unet, UNET_LAYER)._hf_hook.weights_map
    assert torch.equal(hook_weights["weight"], originals[UNET_LAYER + ".weight"])
    assert torch.equal(shared.job_queue.run(lambda: forward(offloaded)), unpatched)


@pytest.mark.parametrize("family,encoder,prefix", [("sd2", 0, "lora_te_"), ("sdxl", 1, "lora_te2_"), ("sd1", 0, "lora_te_")])
def test_openclip_layer_norm_keys_are_dropped_as_a1111_does(webui_session, data_dir, family, encoder, prefix):
    """networks.md §2.4: `layer_norm1/2` keys match nothing on OpenCLIP encoders (SD2, SDXL's second);
    on CLIP-L they are ordinary norm layers."""
    shared = webui_session
    model = use(shared, family)
    norm = next(m for p, m in model.text_encoders[encoder].named_modules() if p.endswith("encoder.layers.0.layer_norm1"))
    name = f"{prefix}text_model_encoder_layers_0_layer_norm1"
    state = {f"{name}.w_norm": torch.full_like(norm.weight, 0.5), f"{name}.b_norm": torch.full_like(norm.bias, 0.25)}
    write(data_dir, f"norm-{family}", state)
    before = norm.weight.detach().clone()
    report = activate(shared, [f"norm-{family}"], [1.0])
    try:
        if family == "sd1":
            assert report.unmatched == {} and torch.allclose(norm.weight, before + 0.5)
        else:
            assert report.unmatched == {f"norm-{family}": [name]} and torch.equal(norm.weight, before)
    finally:
        shared.job_queue.run(lora.restore_all)
