"""Model loading: tokenizer, family/prediction detection, A1111 single files, diffusers folders,
VAE files and the errors for bad files. Uses tiny random-weight models only."""

import json
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from safetensors.torch import save_file

from modules.models.clip_tokenizer import load_clip_tokenizer
from modules.models.detection import detect_family, detect_prediction_type
from modules.models.loader import (
    ARCHITECTURE_METADATA_KEY,
    ModelLoadError,
    apply_vae_state_dict,
    load_checkpoint,
    load_diffusers_folder,
    load_vae_file,
    read_metadata,
    read_state_dict,
    scaled_linear_alphas_cumprod,
)
from modules.tiny_models import build_tiny_models, write_tiny_checkpoint

SEED = 3
TINY = ["sd1", "sd1-inpaint", "sd2-v", "sdxl", "sdxl-refiner"]
EXPECTED = {  # tiny family -> (family, prediction, is_sdxl, is_inpainting, pad ids, VAE scale)
    "sd1": ("sd1", "epsilon", False, False, [49407], 0.18215),
    "sd1-inpaint": ("sd1-inpaint", "epsilon", False, True, [49407], 0.18215),
    "sd2-v": ("sd2", "v_prediction", False, False, [0], 0.18215),
    "sdxl": ("sdxl", "epsilon", True, False, [49407, 0], 0.13025),
    "sdxl-refiner": ("sdxl-refiner", "epsilon", True, False, [0], 0.13025),
}


class CustomPayload:
    """A class that a weights-only pickle must refuse."""

    def __init__(self):
        self.value = 1


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise OSError(f"network access blocked in tests: {address}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    for family in TINY:
        write_tiny_checkpoint(family, folder / f"tiny-{family}.safetensors", seed=SEED)
    return folder


@pytest.fixture(scope="session")
def tiny_built():
    return {family: build_tiny_models(family, seed=SEED) for family in TINY}


def assert_same_weights(loaded, reference):
    got, want = loaded.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


def assert_model_matches(model, built):
    assert_same_weights(model.unet, built["unet"])
    assert_same_weights(model.vae, built["vae"])
    assert len(model.text_encoders) == len(built["text_encoders"])
    for loaded, reference in zip(model.text_encoders, built["text_encoders"]):
        assert type(loaded) is type(reference)
        assert_same_weights(loaded, reference)


# ------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_check_values():
    tokenizer = load_clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert tokenizer.convert_tokens_to_ids([",</w>", "!", "and</w>", "break</w>"]) == [267, 0, 537, 2568]


def test_tokenizer_pad_tokens_and_cache():
    clip_l, open_clip = load_clip_tokenizer(), load_clip_tokenizer("!")
    assert clip_l.pad_token_id == 49407
    assert open_clip.pad_token_id == 0
    assert load_clip_tokenizer() is clip_l and load_clip_tokenizer("!") is open_clip
    padded = open_clip("a cat", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[:4] == [49406, 320, 2368, 49407] and padded[4:] == [0] * 73


# --------------------------------------------------------------------------- single-file round trip


@pytest.mark.parametrize("tiny", TINY)
def test_tiny_checkpoint_round_trip(tiny, tiny_dir, tiny_built):
    path = tiny_dir / f"tiny-{tiny}.safetensors"
    model = load_checkpoint(path)
    family, prediction, is_sdxl, is_inpainting, pads, scale = EXPECTED[tiny]
    assert (model.family, model.prediction_type, model.is_sdxl, model.is_inpainting) == (
        family, prediction, is_sdxl, is_inpainting,
    )
    assert model.path == str(path)
    assert [t.pad_token_id for t in model.tokenizers] == pads
    assert all(len(t) == 49408 for t in model.tokenizers)
    assert model.vae_scaling_factor == scale
    assert model.unet.config.in_channels == (9 if is_inpainting else 4)
    assert_model_matches(model, tiny_built[tiny])
    for module in (model.unet, model.vae, *model.text_encoders):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
        assert not any(t.is_meta for t in (*module.parameters(), *module.buffers()))


def test_alphas_cumprod_table():
    alphas = scaled_linear_alphas_cumprod()
    assert alphas.dtype == torch.float32 and alphas.shape == (1000,)
    sigmas = ((1 - alphas) / alphas).sqrt()
    assert sigmas[0].item() == pytest.approx(0.0291672, abs=1e-6)
    assert sigmas[-1].item() == pytest.approx(14.614641, abs=1e-4)


def test_tiny_writer_is_deterministic(tmp_path, tiny_dir):
    again = write_tiny_checkpoint("sd1", tmp_path / "again.safetensors", seed=SEED)
    other = write_tiny_checkpoint("sd1", tmp_path / "other.safetensors", seed=SEED + 1)
    first, second = read_state_dict(tiny_dir / "tiny-sd1.safetensors"), read_state_dict(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert read_metadata(again) == read_metadata(tiny_dir / "tiny-sd1.safetensors")
    different = read_state_dict(other)
    assert not torch.equal(different["model.diffusion_model.out.2.weight"], first["model.diffusion_model.out.2.weight"])


def test_tiny_file_is_in_a1111_layout(tiny_dir):
    keys = read_state_dict(tiny_dir / "tiny-sdxl.safetensors").keys()
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in keys
    assert "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight" in keys
    assert "conditioner.embedders.1.model.text_projection" in keys
    sd2_keys = read_state_dict(tiny_dir / "tiny-sd2-v.safetensors").keys()
    assert "cond_stage_model.model.ln_final.weight" in sd2_keys
    assert json.loads(read_metadata(tiny_dir / "tiny-sd1.safetensors")[ARCHITECTURE_METADATA_KEY])["unet"]


def test_ckpt_round_trip(tmp_path, tiny_dir, tiny_built):
    source = tiny_dir / "tiny-sdxl.safetensors"
    state = read_state_dict(source)
    architecture = read_metadata(source)[ARCHITECTURE_METADATA_KEY]
    ckpt = tmp_path / "tiny-sdxl.ckpt"
    torch.save({"state_dict": state, "global_step": 1, ARCHITECTURE_METADATA_KEY: architecture}, ckpt)
    model = load_checkpoint(ckpt)
    assert model.family == "sdxl"
    assert_model_matches(model, tiny_built["sdxl"])


def test_ckpt_written_by_tiny_writer(tmp_path, tiny_built):
    path = write_tiny_checkpoint("sd1", tmp_path / "tiny.ckpt", seed=SEED)
    assert_model_matches(load_checkpoint(path), tiny_built["sd1"])


def test_float16_file_loads_in_requested_dtype(tmp_path, tiny_dir):
    source = tiny_dir / "tiny-sd1.safetensors"
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in read_state_dict(source).items()}
    target = tmp_path / "half.safetensors"
    save_file(half, target, metadata=read_metadata(source))
    model = load_checkpoint(target, dtype=torch.float32)
    assert model.unet.conv_in.weight.dtype == torch.float32
    assert model.text_encoders[0].embeddings.position_ids.dtype == torch.int64


# --------------------------------------------------------------------------------------- errors


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(ModelLoadError, match="not found") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["empty.safetensors", "empty.ckpt"])
def test_empty_file(tmp_path, name):
    path = _write(tmp_path / name, b"")
    with pytest.raises(ModelLoadError, match="empty") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_safetensors(tmp_path, tiny_dir):
    data = (tiny_dir / "tiny-sd1.safetensors").read_bytes()
    path = _write(tmp_path / "cut.safetensors", data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_bad_ckpt(tmp_path, how):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"a": torch.ones(100)}}, good)
    data = good.read_bytes()
    payload = data[: len(data) // 2] if how == "truncated" else b"not a checkpoint at all" * 10
    path = _write(tmp_path / f"{how}.ckpt", payload)
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_pickle_with_custom_class_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"a": torch.ones(2)}, "payload": CustomPayload()}, path)
    with pytest.raises(ModelLoadError, match="refused") as info:
        read_state_dict(path)
    assert "CustomPayload" in str(info.value) and str(path) in str(info.value)


def test_unknown_architecture_names_what_was_found(tmp_path, tiny_dir):
    state = read_state_dict(tiny_dir / "tiny-sd1.safetensors")
    vae_only = {k: v for k, v in state.items() if k.startswith("first_stage_model.")}
    path = tmp_path / "vae-only.safetensors"
    save_file(vae_only, path)
    with pytest.raises(ModelLoadError, match="no UNet") as info:
        load_checkpoint(path)
    assert "first_stage_model" in str(info.value) and str(path) in str(info.value)

    other = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.ones(2)}, other)
    with pytest.raises(ModelLoadError, match="foo"):
        load_checkpoint(other)


@pytest.mark.parametrize(
    "tiny, removed",
    [
        ("sd1", "model.diffusion_model.input_blocks.1.0.in_layers.0.weight"),
        ("sd1", "model.diffusion_model.output_blocks.1.1.conv.weight"),
        ("sd1", "first_stage_model.decoder.mid.attn_1.q.weight"),
        ("sd1", "cond_stage_model.transformer.text_model.final_layer_norm.weight"),
        ("sdxl", "model.diffusion_model.label_emb.0.0.weight"),
        ("sdxl", "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight"),
        ("sd2-v", "cond_stage_model.model.token_embedding.weight"),
    ],
)
def test_missing_tensor_is_named(tmp_path, tiny_dir, tiny, removed):
    source = tiny_dir / f"tiny-{tiny}.safetensors"
    state = read_state_dict(source)
    del state[removed]
    path = tmp_path / "incomplete.safetensors"
    save_file(state, path, metadata=read_metadata(source))
    with pytest.raises(ModelLoadError, match="missing") as info:
        load_checkpoint(path)
    assert removed in str(info.value) and str(path) in str(info.value)


def test_architecture_mismatch_is_reported(tmp_path, tiny_dir):
    source = tiny_dir / "tiny-sd1.safetensors"
    path = tmp_path / "no-metadata.safetensors"
    save_file(read_state_dict(source), path)  # tiny weights, full-size config
    with pytest.raises(ModelLoadError, match="shape") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_bad_architecture_metadata(tmp_path, tiny_dir):
    path = tmp_path / "bad-meta.safetensors"
    save_file(read_state_dict(tiny_dir / "tiny-sd1.safetensors"), path, metadata={ARCHITECTURE_METADATA_KEY: "{oops"})
    with pytest.raises(ModelLoadError, match=ARCHITECTURE_METADATA_KEY):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------ detection


def _shapes(**overrides):
    shapes = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    }
    shapes.update(overrides)
    return shapes


def test_detect_family_markers():
    sd1 = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
    sd2 = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
    xl = "conditioner.embedders.1.model.ln_final.weight"
    refiner = "conditioner.embedders.0.model.ln_final.weight"
    assert detect_family(_shapes(**{sd1: (49408, 768)})) == "sd1"
    assert detect_family(_shapes(**{sd2: (3072, 1024)})) == "sd2"
    assert detect_family(_shapes(**{xl: (1280,)})) == "sdxl"
    assert detect_family(_shapes(**{refiner: (1280,)})) == "sdxl-refiner"
    assert detect_family(_shapes(**{sd1: (49408, 768), "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)})) == "sd1-inpaint"
    # no text encoder: the cross-attention width of a full-size UNet decides
    assert detect_family(_shapes()) == "sd1"


@pytest.mark.parametrize("channels, word", [(9, "inpainting"), (8, "instruct-pix2pix")])
def test_detect_family_unsupported_variants(channels, word):
    shapes = _shapes(**{
        "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024),
        "model.diffusion_model.input_blocks.0.0.weight": (320, channels, 3, 3),
    })
    with pytest.raises(ModelLoadError, match=word):
        detect_family(shapes)


def test_prediction_type_rules(tmp_path):
    model = tmp_path / "model.safetensors"
    assert detect_prediction_type(model, "sd2") == "epsilon"
    assert detect_prediction_type(model, "sd2", override="v") == "v_prediction"
    assert detect_prediction_type(model, "sd1", override="v_prediction") == "v_prediction"

    (tmp_path / "model.json").write_text(json.dumps({"description": "x", "prediction": "v"}))
    assert detect_prediction_type(model, "sdxl") == "v_prediction"
    (tmp_path / "model.yaml").write_text('model:\n  params:\n    parameterization: "eps"\n')
    assert detect_prediction_type(model, "sdxl") == "epsilon"  # the yaml comes first
    (tmp_path / "model.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    assert detect_prediction_type(model, "sd1") == "v_prediction"
    assert detect_prediction_type(model, "sd1", override="epsilon") == "epsilon"

    (tmp_path / "other.json").write_text(json.dumps({"prediction": "epsilon"}))
    assert detect_prediction_type(tmp_path / "other.ckpt", "sd2") == "epsilon"
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ModelLoadError, match="broken.json"):
        detect_prediction_type(tmp_path / "broken.safetensors", "sd1")
    with pytest.raises(ModelLoadError, match="prediction"):
        detect_prediction_type(model, "sd1", override="x0")


@pytest.mark.parametrize(
    "name, family, expected",
    [
        ("v2-1_768-ema-pruned.safetensors", "sd2", "epsilon"),
        ("sd21-768-v-ema.safetensors", "sd2", "v_prediction"),
        ("my-V-Pred-model.ckpt", "sd2", "v_prediction"),
        ("sdxl-v-pred.safetensors", "sdxl", "epsilon"),  # the name rule is for SD2 only
    ],
)
def test_prediction_type_by_name(tmp_path, name, family, expected):
    assert detect_prediction_type(tmp_path / name, family) == expected


def test_prediction_override_through_loader(tiny_dir):
    assert load_checkpoint(tiny_dir / "tiny-sd2-v.safetensors", prediction_override="epsilon").prediction_type == "epsilon"
    assert load_checkpoint(tiny_dir / "tiny-sd1.safetensors", prediction_override="v").prediction_type == "v_prediction"


# ------------------------------------------------------------------------------------ VAE files


def test_vae_file_with_ldm_prefix(tmp_path, tiny_dir, tiny_built):
    state = read_state_dict(tiny_dir / "tiny-sd1.safetensors")
    vae = {k: v for k, v in state.items() if k.startswith("first_stage_model.")}
    vae["model_ema.decay"] = torch.tensor(0.999)
    path = tmp_path / "tiny.vae.safetensors"
    save_file(vae, path)
    converted = load_vae_file(path)
    reference = tiny_built["sd1"]["vae"].state_dict()
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


def test_vae_file_without_prefix_and_diffusers_layout(tmp_path, tiny_dir, tiny_built):
    state = read_state_dict(tiny_dir / "tiny-sdxl.safetensors")
    bare = {k.removeprefix("first_stage_model."): v for k, v in state.items() if k.startswith("first_stage_model.")}
    bare["loss.logvar"] = torch.zeros(())
    pt = tmp_path / "bare.pt"
    torch.save({"state_dict": bare}, pt)
    reference = tiny_built["sdxl"]["vae"].state_dict()
    converted = load_vae_file(pt)
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)

    diffusers_file = tmp_path / "diffusers_vae.safetensors"
    save_file({k: v.contiguous() for k, v in reference.items()}, diffusers_file)
    converted = load_vae_file(diffusers_file)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


def test_apply_vae_state_dict(tiny_dir):
    model = load_checkpoint(tiny_dir / "tiny-sd1.safetensors")
    other = build_tiny_models("sd1", seed=SEED + 7)["vae"].state_dict()
    apply_vae_state_dict(model.vae, other)
    assert torch.equal(model.vae.decoder.conv_in.weight, other["decoder.conv_in.weight"])
    with pytest.raises(ModelLoadError, match="shape"):
        apply_vae_state_dict(model.vae, {k: torch.zeros(1) for k in other})


def test_not_a_vae(tmp_path, tiny_dir):
    state = read_state_dict(tiny_dir / "tiny-sd1.safetensors")
    unet_only = {k: v for k, v in state.items() if k.startswith("model.diffusion_model.")}
    path = tmp_path / "unet.safetensors"
    save_file(unet_only, path)
    with pytest.raises(ModelLoadError, match="not a VAE") as info:
        load_vae_file(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------ diffusers folders


def test_diffusers_folder(tmp_path, tiny_built):
    built = tiny_built["sdxl"]
    folder = tmp_path / "tiny-sdxl-diffusers"
    built["unet"].save_pretrained(folder / "unet")
    built["vae"].save_pretrained(folder / "vae")
    clip_l, big_g = built["text_encoders"]
    # transformers 4 layout: keys with the "text_model." prefix
    (folder / "text_encoder").mkdir(parents=True)
    clip_l.config.to_json_file(folder / "text_encoder" / "config.json")
    save_file({"text_model." + k: v.contiguous() for k, v in clip_l.state_dict().items()},
              folder / "text_encoder" / "model.safetensors")
    big_g.save_pretrained(folder / "text_encoder_2")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "v_prediction"}))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    }))
    model = load_diffusers_folder(folder)
    assert (model.family, model.prediction_type, model.is_sdxl) == ("sdxl", "v_prediction", True)
    assert [t.pad_token_id for t in model.tokenizers] == [49407, 0]
    assert model.vae_scaling_factor == 0.13025
    assert_model_matches(model, built)
    assert load_diffusers_folder(folder, prediction_override="epsilon").prediction_type == "epsilon"


def test_diffusers_folder_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_diffusers_folder(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        load_diffusers_folder(tmp_path / "absent")
