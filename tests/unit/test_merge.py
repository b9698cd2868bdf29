"""Checkpoint merger engine on tiny SD1 / SDXL checkpoints: every output key against the formula."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.merge import MergeError, MergeInterrupted, MergeRequest, merge
from modules.merge.block_weights import parse_list
from modules.merge.presets import BUILTIN_PRESETS, parse_preset_lines
from modules.merge.safetensors_stream import StreamingSafetensorsWriter
from modules.tiny_models import write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("merge-inputs")
    files = {}
    for name, family, seed in (("a", "sd1", 0), ("b", "sd1", 1), ("c", "sd1", 2), ("xa", "sdxl", 0),
                               ("xb", "sdxl", 1), ("inpaint", "sd1-inpaint", 0)):
        files[name] = str(write_tiny_checkpoint(family, folder / f"{name}.safetensors", seed=seed))
    return files


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path


def _mergeable(key, tensor):
    return "model" in key and tensor.is_floating_point() and \
        key != "cond_stage_model.transformer.text_model.embeddings.position_ids"


def _assert_weighted(out, a, b, alpha_of):
    assert set(out) == set(a)
    for key, value in out.items():
        if _mergeable(key, a[key]) and key in b:
            alpha = alpha_of(key)
            expected = a[key].float() * (1 - alpha) + b[key].float() * alpha
        else:
            expected = a[key]
        assert value.dtype == expected.dtype, key
        assert (value.float() - expected.float()).abs().max().item() <= 1e-6, key


def test_weighted_sum_every_key_follows_the_formula(models, out_dir):
    result = merge(MergeRequest(models["a"], models["b"], multiplier=0.3, output_dir=str(out_dir)))
    assert os.path.basename(result.filename) == "0.7(a) + 0.3(b).safetensors"
    out, a, b = load_file(result.filename), load_file(models["a"]), load_file(models["b"])
    _assert_weighted(out, a, b, lambda key: 0.3)
    ids = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    assert out[ids].dtype == torch.int64 and torch.equal(out[ids], a[ids])
    assert not os.path.exists(result.filename + ".tmp")


def test_add_difference_and_a_key_missing_from_c(models, out_dir):
    c = load_file(models["c"])
    missing = UNET + "out.2.weight"
    del c[missing]
    c_path = str(out_dir / "c_missing.safetensors")
    save_file(c, c_path)
    result = merge(MergeRequest(models["a"], models["b"], c_path, interp_method="Add difference",
                                multiplier=0.4, output_dir=str(out_dir)))
    assert os.path.basename(result.filename) == "a + 0.4(b - c_missing).safetensors"
    out, a, b = load_file(result.filename), load_file(models["a"]), load_file(models["b"])
    for key, value in out.items():
        if _mergeable(key, a[key]) and key in c:
            expected = a[key] + (b[key] - c[key]) * 0.4
        else:
            expected = a[key]
        assert (value - expected).abs().max().item() <= 1e-6, key
    assert torch.equal(out[missing], a[missing])


def test_no_interpolation_copies_a_bitwise_and_half_converts_floats(models, out_dir):
    result = merge(MergeRequest(models["a"], interp_method="No interpolation", output_dir=str(out_dir),
                                custom_name="converted", save_as_half=True))
    out, a = load_file(result.filename), load_file(models["a"])
    for key, value in out.items():
        if a[key].is_floating_point():
            assert value.dtype == torch.float16 and torch.equal(value, a[key].half()), key
        else:
            assert value.dtype == a[key].dtype and torch.equal(value, a[key]), key
    plain = merge(MergeRequest(models["a"], interp_method="No interpolation", output_dir=str(out_dir), custom_name="same"))
    assert all(torch.equal(v, a[k]) for k, v in load_file(plain.filename).items())


def _block_alpha(key, table, base, text_encoder, vae):
    """Independent statement of merge-train.md §2.3 form A: whole dotted components after the prefix."""
    match = re.match(r"^model\.diffusion_model\.(input_blocks|middle_block|output_blocks|out|time_embed)\.(\d+)\.", key)
    if match:
        return table.get((match[1], int(match[2])), base)
    if key.startswith(UNET + "label_emb."):
        return table.get(("label_emb", 0), base)
    if key.startswith(UNET):
        return base
    if key.startswith(("cond_stage_model.", "conditioner.")):
        return text_encoder
    if key.startswith("first_stage_model."):
        return vae
    return 0.0


def test_sd1_per_block_flags_give_each_block_its_alpha(models, out_dir):
    flags = {"input_blocks": "0:0.11, 1:0.12, 2:0.13, 3:0.14,", "middle_blocks": "0:0.21, 1:0.22, 2:0.23",
             "output_blocks": "0:0.31,1:0.32, 2:0.33, 3:0.34", "out": "0:0.41, 2:0.42", "time_embed": "0:0.51, 2:0.52",
             "base_alpha": 0.05}
    result = merge(MergeRequest(models["a"], models["b"], block_alphas=flags, text_encoder_alpha=0.61,
                                vae_alpha=0.71, output_dir=str(out_dir)))
    table = {("input_blocks", 0): 0.11, ("input_blocks", 1): 0.12, ("input_blocks", 2): 0.13, ("input_blocks", 3): 0.14,
             ("middle_block", 0): 0.21, ("middle_block", 1): 0.22, ("middle_block", 2): 0.23,
             ("output_blocks", 0): 0.31, ("output_blocks", 1): 0.32, ("output_blocks", 2): 0.33,
             ("output_blocks", 3): 0.34, ("out", 0): 0.41, ("out", 2): 0.42, ("time_embed", 0): 0.51,
             ("time_embed", 2): 0.52}
    out, a, b = load_file(result.filename), load_file(models["a"]), load_file(models["b"])
    _assert_weighted(out, a, b, lambda key: _block_alpha(key, table, 0.05, 0.61, 0.71))
    recipe = json.loads(safe_open(result.filename, "pt").metadata()["sd_merge_recipe"])
    assert recipe["block_weights"]["input_blocks"]["3"] == 0.14 and recipe["block_weights"]["vae"] == 0.71
    assert json.loads(recipe["block_weights_source"])["out"] == "0:0.41, 2:0.42"


def test_sd1_flags_default_keep_text_encoder_and_vae_of_a(models, out_dir):
    result = merge(MergeRequest(models["a"], models["b"], block_alphas={"base_alpha": 0.5}, output_dir=str(out_dir)))
    out, a = load_file(result.filename), load_file(models["a"])
    for key in out:
        if key.startswith(("cond_stage_model.", "first_stage_model.")):
            assert torch.equal(out[key], a[key]), key


def _list_alpha(key, values, n_blocks, multiplier):
    """Independent statement of form B (25/26 values; SDXL keeps IN00..08, M00, OUT00..08)."""
    base = values[0] if len(values) in (20, 26) else multiplier
    blocks = values[1:] if len(values) in (20, 26) else values
    if len(blocks) == 25:
        ins, mid, outs = blocks[:n_blocks], blocks[12], blocks[13:13 + n_blocks]
    else:
        ins, mid, outs = blocks[:9], blocks[9], blocks[10:19]
    parts = key.split(".")
    if key.startswith(UNET):
        group, index = parts[2], parts[3]
        if group == "input_blocks":
            return ins[int(index)]
        if group == "middle_block":
            return mid
        if group == "output_blocks":
            return outs[int(index)]
        if group == "out":
            return outs[-1]
        if group in ("time_embed", "label_emb"):
            return ins[0]
        return base
    return base


@pytest.mark.parametrize("length", [25, 26])
def test_sd1_comma_list(models, out_dir, length):
    values = [round(0.01 + 0.03 * i, 4) for i in range(length)]
    result = merge(MergeRequest(models["a"], models["b"], multiplier=0.9, block_weights=", ".join(map(str, values)),
                                output_dir=str(out_dir)))
    out, a, b = load_file(result.filename), load_file(models["a"]), load_file(models["b"])
    _assert_weighted(out, a, b, lambda key: _list_alpha(key, values, 12, 0.9))


@pytest.mark.parametrize("length", [20, 26])
def test_sdxl_comma_list(models, out_dir, length):
    values = [round(0.02 + 0.035 * i, 4) for i in range(length)]
    result = merge(MergeRequest(models["xa"], models["xb"], multiplier=0.2, block_weights=",".join(map(str, values)),
                                output_dir=str(out_dir)))
    out, a, b = load_file(result.filename), load_file(models["xa"]), load_file(models["xb"])
    _assert_weighted(out, a, b, lambda key: _list_alpha(key, values, 9, 0.2))
    key = UNET + "output_blocks.1.0.in_layers.0.weight"
    assert key in out


def test_sdxl_flags_with_label_emb(models, out_dir):
    flags = {"input_blocks": "1:0.2, 8:0.9", "output_blocks": "2:0.4", "middle_blocks": "1:0.6", "label_emb": 0.75,
             "base_alpha": 0.1}
    result = merge(MergeRequest(models["xa"], models["xb"], block_alphas=flags, text_encoder_alpha=0.3,
                                output_dir=str(out_dir), save_as_half=True))
    table = {("input_blocks", 1): 0.2, ("input_blocks", 8): 0.9, ("output_blocks", 2): 0.4,
             ("middle_block", 1): 0.6, ("label_emb", 0): 0.75}
    out, a, b = load_file(result.filename), load_file(models["xa"]), load_file(models["xb"])
    for key, value in out.items():
        alpha = _block_alpha(key, table, 0.1, 0.3, 0.0)
        if _mergeable(key, a[key]) and alpha:
            expected = (a[key] * (1 - alpha) + b[key] * alpha).half()
        else:
            expected = a[key].half() if a[key].is_floating_point() else a[key]
        assert value.dtype == expected.dtype and (value.float() - expected.float()).abs().max() <= 1e-6, key
    with pytest.raises(MergeError, match="SDXL has no index 9"):
        merge(MergeRequest(models["xa"], models["xb"], block_alphas={"input_blocks": "9:0.5"}, output_dir=str(out_dir)))


def _synthetic(path, seed):
    """An SD1-layout file with the block names that naive substring matching gets wrong."""
    g = torch.Generator().manual_seed(seed)
    keys = [UNET + "input_blocks.1.0.in_layers.0.weight", UNET + "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight",
            UNET + "input_blocks.10.0.in_layers.0.weight", UNET + "input_blocks.11.0.out_layers.3.weight",
            UNET + "middle_block.1.transformer_blocks.0.attn2.to_out.0.bias", UNET + "output_blocks.0.0.emb_layers.1.weight",
            UNET + "output_blocks.10.1.transformer_blocks.0.attn1.to_out.0.weight", UNET + "out.0.weight", UNET + "out.2.bias",
            UNET + "time_embed.0.weight", "cond_stage_model.transformer.text_model.final_layer_norm.weight"]
    save_file({k: torch.randn(4, 3, generator=g) for k in keys}, path)
    return keys


def test_block_1_never_reaches_10_and_11_and_out_never_catches_to_out(tmp_path):
    a, b = str(tmp_path / "sa.safetensors"), str(tmp_path / "sb.safetensors")
    keys = _synthetic(a, 0)
    _synthetic(b, 1)
    result = merge(MergeRequest(a, b, block_alphas={"input_blocks": "1:0.9", "out": "0:0.7, 2:0.6", "base_alpha": 0.1},
                                output_path=str(tmp_path / "m.safetensors")))
    out, ta, tb = load_file(result.filename), load_file(a), load_file(b)
    expected_alpha = {keys[0]: 0.9, keys[1]: 0.9, keys[2]: 0.1, keys[3]: 0.1, keys[4]: 0.1, keys[5]: 0.1,
                      keys[6]: 0.1, keys[7]: 0.7, keys[8]: 0.6, keys[9]: 0.1, keys[10]: 0.0}
    for key, alpha in expected_alpha.items():
        assert (out[key] - (ta[key] * (1 - alpha) + tb[key] * alpha)).abs().max() <= 1e-6, key


def test_inpainting_first_conv_rule_and_name(models, out_dir):
    result = merge(MergeRequest(models["inpaint"], models["b"], multiplier=0.5, output_dir=str(out_dir)))
    assert result.filename.endswith("0.5(inpaint) + 0.5(b).inpainting.safetensors") and result.is_inpainting
    conv = UNET + "input_blocks.0.0.weight"
    out, a, b = load_file(result.filename), load_file(models["inpaint"]), load_file(models["b"])
    assert (out[conv][:, :4] - (a[conv][:, :4] * 0.5 + b[conv] * 0.5)).abs().max() <= 1e-6
    assert torch.equal(out[conv][:, 4:], a[conv][:, 4:])
    recipe = json.loads(safe_open(result.filename, "pt").metadata()["sd_merge_recipe"])
    assert recipe["is_inpainting"] is True
    before = set(os.listdir(out_dir))
    with pytest.raises(MergeError, match="A must be the inpainting model"):
        merge(MergeRequest(models["b"], models["inpaint"], output_dir=str(out_dir)))
    assert set(os.listdir(out_dir)) == before


def test_mismatched_families_are_refused_before_writing(models, out_dir):
    with pytest.raises(MergeError, match="mismatched families: A is sd1, B is sdxl"):
        merge(MergeRequest(models["a"], models["xb"], output_dir=str(out_dir)))
    assert os.listdir(out_dir) == []


def test_metadata_recipe_and_models(models, out_dir):
    a_meta_path = str(out_dir / "with_meta.safetensors")
    save_file(load_file(models["a"]), a_meta_path, metadata={
        **safe_open(models["a"], "pt").metadata(), "ss_tag_frequency": '{"x": {"y": 1}}', "modelspec.thumbnail": "data:"})
    result = merge(MergeRequest(a_meta_path, models["b"], multiplier=0.25, output_dir=str(out_dir),
                                metadata_json='{"author": "me", "n": 3}'))
    metadata = safe_open(result.filename, "pt").metadata()
    assert all(isinstance(v, str) for v in metadata.values())
    assert metadata["format"] == "pt" and metadata["author"] == "me" and metadata["n"] == "3"
    assert metadata["ss_tag_frequency"] == '{"x": {"y": 1}}' and "modelspec.thumbnail" not in metadata
    recipe = json.loads(metadata["sd_merge_recipe"])
    assert set(recipe) == {"type", "primary_model_hash", "secondary_model_hash", "tertiary_model_hash", "interp_method",
                           "multiplier", "save_as_half", "custom_name", "config_source", "bake_in_vae",
                           "discard_weights", "is_inpainting", "is_instruct_pix2pix"}
    assert recipe["type"] == "webui" and recipe["interp_method"] == "Weighted sum" and recipe["multiplier"] == 0.25
    assert re.fullmatch(r"[0-9a-f]{64}", recipe["primary_model_hash"])
    assert re.fullmatch(r"[0-9a-f]{64}", recipe["secondary_model_hash"]) and recipe["tertiary_model_hash"] is None
    models_meta = json.loads(metadata["sd_merge_models"])
    assert set(models_meta) == {recipe["primary_model_hash"], recipe["secondary_model_hash"]}
    assert models_meta[recipe["secondary_model_hash"]]["name"] == "b"
    assert re.fullmatch(r"[0-9a-f]{8}", models_meta[recipe["secondary_model_hash"]]["legacy_hash"])
    import hashlib
    assert hashlib.sha256(open(result.filename, "rb").read()).hexdigest() == result.sha256
    with pytest.raises(MergeError, match="not valid JSON"):
        merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), custom_name="bad", metadata_json="{x"))


def test_bake_in_vae_and_discard(models, out_dir):
    a = load_file(models["a"])
    vae = {k[len("first_stage_model."):]: v + 1 for k, v in a.items() if k.startswith("first_stage_model.")}
    vae_path = str(out_dir / "my.vae.safetensors")
    save_file(vae, vae_path)
    result = merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), bake_in_vae=vae_path,
                                bake_in_vae_name="my.vae.safetensors", discard_weights=r"^model\.diffusion_model\.out\."))
    out = load_file(result.filename)
    for key, value in vae.items():
        assert torch.equal(out["first_stage_model." + key], value), key
    assert not any(k.startswith(UNET + "out.") for k in out)
    assert set(out) == {k for k in a if not k.startswith(UNET + "out.")}
    with pytest.raises(MergeError, match="not a valid regular expression"):
        merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), custom_name="x", discard_weights="(["))


def test_existing_target_inputs_and_interrupt(models, out_dir):
    first = merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), custom_name="once"))
    with pytest.raises(MergeError, match="already exists"):
        merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), custom_name="once"))
    with pytest.raises(MergeError, match="one of the models being merged"):
        merge(MergeRequest(models["a"], models["b"], output_path=models["a"], overwrite=True))
    calls = []
    with pytest.raises(MergeInterrupted):
        merge(MergeRequest(models["a"], models["b"], output_dir=str(out_dir), custom_name="stopped"),
              should_stop=lambda: calls.append(1) or len(calls) > 50)
    assert sorted(os.listdir(out_dir)) == [os.path.basename(first.filename)]


def test_ckpt_input_and_output(models, out_dir):
    ckpt_in = str(out_dir / "b.ckpt")
    torch.save({"state_dict": load_file(models["b"])}, ckpt_in)
    result = merge(MergeRequest(models["a"], ckpt_in, multiplier=0.5, output_path=str(out_dir / "m.ckpt")))
    saved = torch.load(result.filename, weights_only=True)
    assert set(saved) == {"state_dict", "sdwebui_architecture"}
    _assert_weighted(saved["state_dict"], load_file(models["a"]), load_file(models["b"]), lambda key: 0.5)


def test_merged_file_loads_through_the_project_loader(models, out_dir):
    from modules.models.loader import load_checkpoint
    result = merge(MergeRequest(models["xa"], models["xb"], block_weights="GRAD_V", output_dir=str(out_dir)))
    loaded = load_checkpoint(result.filename)
    assert loaded.family == "sdxl"


def test_presets_and_list_errors():
    assert BUILTIN_PRESETS["GRAD_V"][0] == 1 and BUILTIN_PRESETS["GRAD_V"][12] == 0
    assert abs(BUILTIN_PRESETS["SMOOTHSTEP"][1] - 0.0050637) < 1e-7
    assert all(len(v) == 25 for v in BUILTIN_PRESETS.values())
    assert parse_list("FLAT_25") == [0.25] * 25
    assert parse_preset_lines("MINE\t" + ",".join(["0.5"] * 25) + "\nOTHER: 1,0")["OTHER"] == [1.0, 0.0]
    with pytest.raises(MergeError, match="unknown preset 'NOPE'"):
        parse_list("NOPE")
    from modules.merge.block_weights import from_flags, from_list
    with pytest.raises(MergeError, match=r"19 values given; SD1/SD2 takes 25 or 26 \(19/20 are for SDXL\)"):
        from_list("sd", ",".join(["0.5"] * 19), 0.5)
    with pytest.raises(MergeError, match="index 3 is given twice"):
        from_flags("sd", input_blocks="3:0.5, 3:0.6")
    with pytest.raises(MergeError, match="out: SD1/SD2 has no index 1"):
        from_flags("sd", out="1:0.5")


def test_streaming_writer_output_reads_back(tmp_path):
    tensors = {"a": torch.randn(5, 3), "b": torch.zeros(0, 4), "c": torch.arange(7, dtype=torch.int64),
               "d": torch.randn(2, 2).to(torch.bfloat16), "e": torch.tensor(3.5, dtype=torch.float16)}
    path = tmp_path / "w.safetensors"
    with open(path, "wb") as file:
        writer = StreamingSafetensorsWriter(file, [(k, tuple(v.shape), v.dtype) for k, v in tensors.items()], {"k": "v"})
        writer.write("a", tensors["a"][:2])
        writer.write("a", tensors["a"][2:])
        for key in ("c", "d", "e"):
            writer.write(key, tensors[key])
        writer.finish()
    back = load_file(str(path))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    assert safe_open(str(path), "pt").metadata() == {"k": "v"}


def test_cli_runs_the_users_form_end_to_end(models, tmp_path, capsys):
    a, b = str(tmp_path / "A.safetensors"), str(tmp_path / "B.safetensors")
    keys = _synthetic(a, 3)
    _synthetic(b, 4)
    torch.save({"state_dict": load_file(b)}, str(tmp_path / "B.ckpt"))
    ins = ", ".join(f"{i}:{0.3 if i == 1 else 0.5}" for i in range(12))
    command = [sys.executable, os.path.join(ROOT, "tools", "merge_unet_blocks.py"), a, str(tmp_path / "B.ckpt"),
               "--input_blocks", ins, "--middle_blocks", "0:0.5, 1:0.5, 2:0.6",
               "--output_blocks", ", ".join(f"{i}:0.5" for i in range(12)), "--out", "0:0.5, 2:0.3",
               "--time_embed", "0:0.5, 2:0.3", "--base_alpha", "0.5", "--dump_path", str(tmp_path / "merged.safetensors")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    out, ta, tb = load_file(str(tmp_path / "merged.safetensors")), load_file(a), load_file(b)
    alphas = {keys[0]: 0.3, keys[1]: 0.3, keys[2]: 0.5, keys[3]: 0.5, keys[4]: 0.5, keys[5]: 0.5, keys[6]: 0.5,
              keys[7]: 0.5, keys[8]: 0.3, keys[9]: 0.5, keys[10]: 0.0}
    for key, alpha in alphas.items():
        assert (out[key] - (ta[key] * (1 - alpha) + tb[key] * alpha)).abs().max() <= 1e-6, key
    # --half on a real tiny model; a missing file and an index the family lacks are clear errors
    half = subprocess.run([sys.executable, "tools/merge_unet_blocks.py", models["a"], models["b"], "--half",
                           "--base_alpha", "0.5", "--dump_path", str(tmp_path / "h.safetensors")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert half.returncode == 0, half.stderr
    assert {t.dtype for k, t in load_file(str(tmp_path / "h.safetensors")).items() if t.is_floating_point()} == {torch.float16}
    import importlib.util
    spec = importlib.util.spec_from_file_location("merge_cli", os.path.join(ROOT, "tools", "merge_unet_blocks.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([str(tmp_path / "nope.safetensors"), models["b"]]) == 2
    assert "nope.safetensors: file not found" in capsys.readouterr().err
    assert cli.main([models["a"], models["b"], "--output_blocks", "12:0.5"]) == 2
    assert "output_blocks: SD1/SD2 has no index 12" in capsys.readouterr().err


def test_copy_config_from(models, out_dir):
    a = out_dir / "cfg_a.safetensors"
    a.write_bytes(open(models["a"], "rb").read())
    (out_dir / "cfg_a.yaml").write_text("model: {params: {parameterization: v}}\n")
    first = merge(MergeRequest(str(a), models["b"], output_dir=str(out_dir), custom_name="with_cfg"))
    assert (out_dir / "with_cfg.yaml").read_text() == "model: {params: {parameterization: v}}\n"
    merge(MergeRequest(str(a), models["b"], output_dir=str(out_dir), custom_name="b_cfg", config_source=1))
    merge(MergeRequest(str(a), models["b"], output_dir=str(out_dir), custom_name="no_cfg", config_source=3))
    assert not (out_dir / "b_cfg.yaml").exists() and not (out_dir / "no_cfg.yaml").exists()
    assert first.filename.endswith("with_cfg.safetensors")
