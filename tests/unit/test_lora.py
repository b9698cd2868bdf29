"""LoRA on tiny SD1 / SD2 / SDXL models: key mapping (kohya diffusers-style, kohya LDM-style, peft),
exact patched weights, bit-exact restore, several networks, cache, reports, refusal, generation."""
import hashlib
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import processing, sd_models
from modules.models.ldm_convert import to_ldm_checkpoint
from modules.models.loader import ARCHITECTURE_METADATA_KEY
from modules.networks import lora, network_file
from tests import lora_fixtures as lf

FAMILY_CHECKPOINT = {"sd1": "tiny-sd1", "sd2": "tiny-sd2-v", "sdxl": "tiny-sdxl"}


def use(shared, family):
    info = sd_models.find_checkpoint(FAMILY_CHECKPOINT[family])
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


def lora_dir(data_dir):
    folder = data_dir / "models" / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write(data_dir, name, state, metadata=None):
    path = lora_dir(data_dir) / f"{name}.safetensors"
    save_file(state, str(path), metadata=metadata)
    lora.list_available_networks()
    return path


def snapshot(model):
    parts = [model.unet, *model.text_encoders]
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in parts]


def assert_same(model, snap):
    for module, saved in zip([model.unet, *model.text_encoders], snap):
        for key, value in module.state_dict().items():
            assert torch.equal(value, saved[key]), key


def activate(shared, names, te=None, unet=None, dyn=None):
    return shared.job_queue.run(lambda: lora.load_networks(names, te, unet, dyn))


def restore(shared):
    shared.job_queue.run(lora.restore_all)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("style", ["diffusers", "ldm", "peft"])
def test_every_key_maps_and_patches_exactly(webui_session, data_dir, family, style):
    shared = webui_session
    model = use(shared, family)
    state, factors = lf.random_lora(model, rank=4, alpha=2.0, style=style, seed=hash((family, style)) % 1000)
    name = f"map-{family}-{style}"
    write(data_dir, name, state)
    before = snapshot(model)
    originals = {m: m.weight.detach().clone() for m in factors}
    te_modules = {m for enc in model.text_encoders for m in enc.modules()}

    report = activate(shared, [name], [0.3], [0.9])
    assert report.unmatched == {} and report.not_found == [] and report.refused == [] and report.errors == {}
    assert len(report.networks[0].modules) == len(factors)
    for module, (up, down, alpha) in factors.items():
        m = 0.3 if module in te_modules else 0.9
        expected = lf.lora_reference(originals[module], up, down, alpha, m)
        error = (module.weight.detach().float() - expected).abs().max().item()
        assert error <= 1e-6 * max(1.0, originals[module].abs().max().item())

    restore(shared)
    assert_same(model, before)


def test_kohya_names_of_one_layer_resolve_alike(webui_session):
    model = use(webui_session, "sd1")
    from modules.networks import keymap
    table = keymap.module_table(model)
    # networks.md §2.3: diffusers-style and LDM-style names of the same layer
    assert table["lora_unet_down_blocks_0_resnets_0_conv1"] is table["lora_unet_input_blocks_1_0_in_layers_2"]
    assert table["lora_unet_mid_block_resnets_1_norm2"] is table["lora_unet_middle_block_2_out_layers_0"]
    assert table["lora_unet_conv_in"] is table["lora_unet_input_blocks_0_0"]
    assert table["lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj"] is \
        table["lora_unet_output_blocks_2_1_transformer_blocks_0_ff_net_0_proj"]  # tiny: 1 layer per block
    assert table["lora_te_text_model_encoder_layers_1_mlp_fc1"].is_te


def test_sdxl_upsampler_maps_by_structure(webui_session):
    """SDXL's diffusers-named up_blocks_0 upsampler is output_blocks_2_2 (A1111 drops it, §2.3)."""
    model = use(webui_session, "sdxl")
    from modules.networks import keymap
    table = keymap.module_table(model)
    assert table["lora_unet_up_blocks_0_upsamplers_0_conv"] is table["lora_unet_output_blocks_1_2_conv"]  # real SDXL: output_blocks_2_2


def test_bogus_key_is_reported_by_name(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, _ = lf.random_lora(model, te=False, unet_filter=lambda p: p.endswith("attn2.to_k"))
    state["lora_unet_bogus_block_to_q.lora_down.weight"] = torch.zeros(4, 32)
    state["lora_unet_bogus_block_to_q.lora_up.weight"] = torch.zeros(32, 4)
    write(data_dir, "bogus", state)
    processed = run(shared, prompt="a cat <lora:bogus:1>")
    assert "Lora bogus: 1 keys match no layer of the model: lora_unet_bogus_block_to_q" in processed.comments


def test_several_networks_add_up_in_either_order(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    only = lambda p: p.endswith("attn1.to_q")  # noqa: E731
    s1, f1 = lf.random_lora(model, seed=1, te=False, unet_filter=only)
    s2, f2 = lf.random_lora(model, seed=2, rank=8, alpha=4.0, te=False, unet_filter=only)
    write(data_dir, "add1", s1)
    write(data_dir, "add2", s2)
    module = next(iter(f1))
    w0 = module.weight.detach().clone()
    (u1, d1, a1), (u2, d2, a2) = f1[module], f2[module]
    expected = lf.lora_reference(w0, u1, d1, a1, 0.5) + (lf.lora_reference(w0, u2, d2, a2, 1.5) - w0)
    for order in (["add1", "add2"], ["add2", "add1"]):
        mult = {"add1": 0.5, "add2": 1.5}
        activate(shared, order, [mult[n] for n in order])
        assert (module.weight - expected).abs().max() <= 1e-6
    restore(shared)
    assert torch.equal(module.weight, w0)


def test_switching_sets_repatches_and_restores(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, factors = lf.random_lora(model, seed=3)
    write(data_dir, "switch", state)
    before = snapshot(model)
    originals = {m: m.weight.detach().clone() for m in factors}
    activate(shared, ["switch"], [1.0])
    activate(shared, ["switch"], [0.25])  # a new multiplier: patched from the original, not on top
    for module, (up, down, alpha) in factors.items():
        expected = lf.lora_reference(originals[module], up, down, alpha, 0.25)
        assert (module.weight - expected).abs().max() <= 1e-6
    activate(shared, [], [])
    assert_same(model, before)


def test_zero_multiplier_and_dyn(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, factors = lf.random_lora(model, seed=4, rank=6, alpha=3.0, te=False,
                                    unet_filter=lambda p: p.endswith("attn2.to_v"))
    write(data_dir, "dyn", state)
    module, (up, down, alpha) = next(iter(factors.items()))
    w0 = module.weight.detach().clone()
    activate(shared, ["dyn"], [0.0])
    assert (module.weight - w0).abs().max() <= 1e-7
    activate(shared, ["dyn"], [1.0], [1.0], [2])
    expected = w0 + (up[:, :2] @ down[:2]) * (alpha / 6)  # first d ranks, alpha / full rank (§3.1)
    assert (module.weight - expected).abs().max() <= 1e-6
    restore(shared)
    assert torch.equal(module.weight, w0)


def test_memory_cache_reuses_the_parsed_file(webui_session, data_dir, monkeypatch):
    shared = webui_session
    model = use(shared, "sd1")
    state, _ = lf.random_lora(model, seed=5, te=False)
    write(data_dir, "cached", state)
    reads = []
    real = network_file.load_network_file
    monkeypatch.setattr(network_file, "load_network_file", lambda *a, **k: reads.append(a) or real(*a, **k))
    def twice():
        with shared.opts.override({"lora_in_memory_limit": 2}):
            for _ in range(2):
                lora.load_networks(["cached"])
                lora.restore_all()
    shared.job_queue.run(twice)
    assert len(reads) == 1
    lora.purge_cache(0)


def test_other_family_is_refused(webui_session, data_dir):
    shared = webui_session
    sd1 = use(shared, "sd1")
    state, _ = lf.random_lora(sd1, seed=6, te=False)
    write(data_dir, "for-sd1", state, metadata={"ss_base_model_version": "sd_v1", "ss_output_name": "for-sd1"})
    xl = use(shared, "sdxl")
    before = snapshot(xl)
    processed = run(shared, prompt="a cat <lora:for-sd1:1>")
    assert "Lora not applied, made for another model family: for-sd1 (SD1 network, SDXL model)" in processed.comments
    assert "Lora hashes" not in processed.info
    assert_same(xl, before)


def test_not_found_and_bad_number_are_comments(webui_session):
    shared = webui_session
    use(shared, "sd1")
    processed = run(shared, prompt="a cat <lora:nope:1> <lora:also:x>")
    assert "Lora not found: nope" in processed.comments
    assert "Lora tag <lora:also:x> skipped: text encoder multiplier 'x' is not a number" in processed.comments


def run(shared, **kwargs):
    fields = dict(prompt="a cat", negative_prompt="", steps=3, width=64, height=64, seed=77, cfg_scale=6.0,
                  sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    return shared.job_queue.run(lambda: processing.process_images(p))


def addnet_hash(path):
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n:]).hexdigest()


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_image_equals_checkpoint_with_lora_merged_in(webui_session, data_dir, tmp_path, family):
    shared = webui_session
    model = use(shared, family)
    state, factors = lf.random_lora(model, seed=7, style="ldm" if family == "sdxl" else "diffusers")
    path = write(data_dir, f"merge-{family}", state)
    before = snapshot(model)
    with_lora = run(shared, prompt=f"a cat <lora:merge-{family}:0.7>", negative_prompt="ugly")
    assert_same(model, before)  # bit-identical after the job
    assert f'Lora hashes: "merge-{family}: {addnet_hash(path)[:12]}"' in with_lora.info

    # the test merges the LoRA itself into a copy of the components and writes a checkpoint
    from modules.models.loader import load_checkpoint
    source = data_dir / "models" / "Stable-diffusion" / f"{FAMILY_CHECKPOINT[family]}.safetensors"
    copy = load_checkpoint(str(source))
    by_name = {}
    for part, built in ((model.unet, copy.unet), *zip(model.text_encoders, copy.text_encoders)):
        names = {m: n for n, m in part.named_modules()}
        own = dict(built.named_modules())
        by_name.update({m: own[names[m]] for m in names if m in factors})
    with torch.no_grad():
        for module, (up, down, alpha) in factors.items():
            target = by_name[module]
            target.weight.copy_(lf.lora_reference(target.weight, up, down, alpha, 0.7))
    merged = to_ldm_checkpoint(copy.family, copy.unet, copy.vae, copy.text_encoders)
    from modules.tiny_models import tiny_overrides
    import json
    tiny_family = {"sd1": "sd1", "sdxl": "sdxl"}[family]
    merged_path = tmp_path / f"merged-{family}.safetensors"
    save_file({k: v.contiguous() for k, v in merged.items()}, str(merged_path),
              metadata={ARCHITECTURE_METADATA_KEY: json.dumps(tiny_overrides(tiny_family), sort_keys=True)})
    info = sd_models.CheckpointInfo(str(merged_path), None)
    shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    plain = run(shared, prompt="a cat", negative_prompt="ugly")
    a = np.asarray(with_lora.images[0], dtype=np.int16)
    b = np.asarray(plain.images[0], dtype=np.int16)
    assert np.array_equal(a, b), np.abs(a - b).max()


def test_negative_prompt_tags_stay_text(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, _ = lf.random_lora(model, seed=8)
    write(data_dir, "neg", state)
    tagged = run(shared, negative_prompt="<lora:neg:1>")
    assert "Lora hashes" not in tagged.info and "Negative prompt: <lora:neg:1>" in tagged.info
    plain = run(shared, negative_prompt="")
    assert not np.array_equal(np.asarray(tagged.images[0]), np.asarray(plain.images[0]))


def test_paste_resolves_renamed_lora_by_hash(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, _ = lf.random_lora(model, seed=9, te=False)
    path = write(data_dir, "localname", state)
    digest = addnet_hash(path)[:12]
    run(shared, prompt="a <lora:localname:1>")  # hashed at first use
    from modules.api.outputs_routes import parse_infotext_with_settings
    params = parse_infotext_with_settings(
        f'a <lora:theirname:0.6>\nSteps: 3, Seed: 1, Lora hashes: "theirname: {digest}"')
    assert params["Prompt"] == "a <lora:localname:0.6>"
    params = parse_infotext_with_settings('a <lora:other:0.6>\nSteps: 3, Seed: 1, Lora hashes: "other: 000000000000"')
    assert params["Prompt"] == "a <lora:other:0.6>"


def test_alias_and_forbidden_duplicate_alias(webui_session, data_dir):
    shared = webui_session
    model = use(shared, "sd1")
    state, _ = lf.random_lora(model, seed=10, te=False, unet_filter=lambda p: p.endswith("to_k"))
    write(data_dir, "stem-a", state, metadata={"ss_output_name": "pretty"})
    assert lora.registry.find("pretty").name == "stem-a"
    write(data_dir, "stem-b", state, metadata={"ss_output_name": "pretty"})
    assert lora.registry.find("pretty") is None or lora.registry.find("pretty").name in ("stem-a", "stem-b")
    assert "pretty" in lora.registry.forbidden_network_aliases
    assert lora.registry.find("stem-a").name == "stem-a" and lora.registry.find("stem-b").name == "stem-b"
    for name in ("stem-a", "stem-b"):
        os.remove(lora_dir(data_dir) / f"{name}.safetensors")
    lora.list_available_networks()
