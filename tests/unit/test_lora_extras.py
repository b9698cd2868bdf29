"""LoRA engine extras on the tiny SD1 model: embeddings bundled in a LoRA file (networks.md §3.11),
lora_functional (§4.3), and the caches of parsed files and deltas."""
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import conditioning, processing, sd_models
from modules.networks import lora, network_file, network_types, patching
from tests import lora_fixtures as lf
from tests.unit.test_lora import assert_same, restore, snapshot, use, write

WORD = "wizzle"


def run(shared, overrides=None, **kwargs):
    """A tiny txt2img job with settings overridden in the job's own context."""
    fields = dict(prompt="a cat", negative_prompt="", steps=3, width=64, height=64, seed=77, cfg_scale=6.0,
                  sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)

    def job():
        with shared.opts.override(overrides or {}):
            return processing.process_images(p)
    return shared.job_queue.run(job)


def activate(shared, names, te=None, unet=None, overrides=None):
    def job():
        with shared.opts.override(overrides or {}):
            return lora.load_networks(names, te, unet)
    return shared.job_queue.run(job)

def width(model):
    return int(model.text_encoders[0].config.hidden_size)


def encode(shared, model, text):
    used = {}
    cond = shared.job_queue.run(lambda: conditioning.encode(model, [text], used_embeddings=used))
    return cond, used


def embeddings_file(shared, model, vectors, name=WORD):
    folder = shared.paths.embeddings
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.pt")
    torch.save({"string_to_param": {"*": vectors}, "name": name}, path)
    sd_models.refresh_embeddings(model, force=True)
    return path


def drop_file(shared, model, path):
    os.remove(path)
    sd_models.refresh_embeddings(model, force=True)


@pytest.fixture
def sd1(webui_session):
    model = use(webui_session, "sd1")
    sd_models.refresh_embeddings(model, force=True)
    return model


def bundle_lora(data_dir, model, name, vectors, seed=21):
    state, _ = lf.random_lora(model, seed=seed, te=False, unet_filter=lambda p: p.endswith("attn2.to_k"))
    state[f"bundle_emb.{WORD}.string_to_param.*"] = vectors
    return write(data_dir, name, state)


def test_bundled_embedding_encodes_like_the_same_file_and_goes_with_the_lora(webui_session, data_dir, sd1):
    shared = webui_session
    vectors = torch.randn(2, width(sd1), generator=torch.Generator().manual_seed(3))
    bundle_lora(data_dir, sd1, "bund", vectors)
    plain, used = encode(shared, sd1, f"a {WORD} cat")
    assert used == {}

    report = activate(shared, ["bund"])
    assert report.bundled_shadowed == []
    with_lora, used = encode(shared, sd1, f"a {WORD} cat")
    assert list(used) == [WORD] and used[WORD].bundled_in == "bund"
    assert shared.embedding_db.word_embeddings.get(WORD) is None  # the folders' database is untouched
    restore(shared)
    after, used = encode(shared, sd1, f"a {WORD} cat")
    assert used == {} and torch.equal(after, plain)  # plain text again

    # independent reference: the same vectors as an embeddings/ file, no LoRA
    path = embeddings_file(shared, sd1, vectors.clone())
    try:
        reference, used = encode(shared, sd1, f"a {WORD} cat")
        assert list(used) == [WORD]
        assert torch.equal(with_lora, reference)
        assert not torch.equal(with_lora, plain)
    finally:
        drop_file(shared, sd1, path)


def test_embeddings_file_of_the_same_name_wins(webui_session, data_dir, sd1):
    shared = webui_session
    g = torch.Generator().manual_seed(4)
    bundle_lora(data_dir, sd1, "bund2", torch.randn(1, width(sd1), generator=g))
    path = embeddings_file(shared, sd1, torch.randn(1, width(sd1), generator=g))
    try:
        reference, _ = encode(shared, sd1, f"a {WORD}")
        report = activate(shared, ["bund2"])
        assert report.bundled_shadowed == [f"{WORD} (in bund2)"]
        cond, used = encode(shared, sd1, f"a {WORD}")
        assert used[WORD].bundled_in is None and torch.equal(cond, reference)
        restore(shared)
    finally:
        drop_file(shared, sd1, path)


def test_bundled_embedding_of_another_width_is_listed_as_skipped(webui_session, data_dir, sd1):
    shared = webui_session
    bundle_lora(data_dir, sd1, "bund3", torch.randn(1, width(sd1) + 8))
    activate(shared, ["bund3"])
    try:
        assert WORD in sd1.embedding_db.skipped_embeddings and WORD not in sd1.embedding_db.word_embeddings
        _, used = encode(shared, sd1, f"a {WORD}")
        assert used == {}
    finally:
        restore(shared)
    assert sd1.embedding_db is shared.embedding_db


def test_bundled_embedding_ti_hashes(webui_session, data_dir, sd1):
    shared = webui_session
    bundle_lora(data_dir, sd1, "bund4", torch.randn(1, width(sd1)))
    processed = run(shared, prompt=f"a {WORD} <lora:bund4:1>", steps=1)
    assert f'TI hashes: "{WORD}: bund4"' in processed.info
    processed = run(shared, {"lora_bundled_ti_to_infotext": False}, prompt=f"a {WORD} <lora:bund4:1>", steps=1)
    assert f'TI hashes: "{WORD}: "' in processed.info
    assert sd1.embedding_db is shared.embedding_db  # unloaded after the job


# --------------------------------------------------------------------------- lora_functional

def test_functional_image_equals_patched_image_and_weights_stay(webui_session, data_dir, sd1):
    shared = webui_session
    state, _ = lf.random_lora(sd1, seed=31)
    write(data_dir, "func", state)
    before = snapshot(sd1)
    patched = run(shared, prompt="a cat <lora:func:0.8>", negative_prompt="ugly")
    on = {"lora_functional": True}
    activate(shared, ["func"], [0.8], [0.8], overrides=on)
    assert lora.patcher.patched_modules()
    assert_same(sd1, before)  # active, and the weights untouched
    restore(shared)
    functional = run(shared, on, prompt="a cat <lora:func:0.8>", negative_prompt="ugly")
    assert_same(sd1, before)
    plain = run(shared, prompt="a cat", negative_prompt="ugly")
    a = np.asarray(patched.images[0], dtype=np.int16)
    b = np.asarray(functional.images[0], dtype=np.int16)
    c = np.asarray(plain.images[0], dtype=np.int16)
    assert np.abs(a - b).max() <= 1
    assert np.abs(a - c).max() > 10  # the LoRA does change the image


def _layer_patch(parts, multiplier=0.7, name="x"):
    return patching.LayerPatch(name, (name,), network_types.Prepared(parts), multiplier, None, name)


@pytest.mark.parametrize("case", ["linear_lora", "conv3x3_locon", "conv_tucker", "linear_loha", "groupnorm",
                                  "layernorm_diff", "linear_ia3"])
def test_functional_forward_equals_merged_forward(case):
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    if case == "linear_lora":
        module, x = torch.nn.Linear(6, 5), r(3, 6)
        parts = {"lora_down.weight": r(2, 6), "lora_up.weight": r(5, 2), "alpha": torch.tensor(1.0)}
    elif case == "conv3x3_locon":
        module, x = torch.nn.Conv2d(4, 3, 3, stride=2, padding=1), r(1, 4, 7, 7)
        parts = {"lora_down.weight": r(2, 4, 3, 3), "lora_up.weight": r(3, 2, 1, 1)}
    elif case == "conv_tucker":
        module, x = torch.nn.Conv2d(4, 3, 3, padding=1), r(1, 4, 5, 5)
        parts = {"lora_down.weight": r(2, 4, 1, 1), "lora_mid.weight": r(2, 2, 3, 3), "lora_up.weight": r(3, 2, 1, 1)}
    elif case == "linear_loha":
        module, x = torch.nn.Linear(6, 5), r(3, 6)
        parts = {"hada_w1_a": r(5, 2), "hada_w1_b": r(2, 6), "hada_w2_a": r(5, 2), "hada_w2_b": r(2, 6),
                 "alpha": torch.tensor(1.0)}
    elif case == "groupnorm":
        module, x = torch.nn.GroupNorm(2, 4), r(2, 4, 3, 3)
        parts = {"w_norm": r(4), "b_norm": r(4)}
    elif case == "layernorm_diff":
        module, x = torch.nn.LayerNorm(6), r(3, 6)
        parts = {"diff": r(6), "diff_b": r(6)}
    else:
        module, x = torch.nn.Linear(6, 5), r(3, 6)
        parts = {"weight": r(5), "on_input": torch.tensor(False)}
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(r(*p.shape))
    w0 = module.weight.detach().clone()
    patcher = patching.Patcher()
    with torch.no_grad():
        patcher.apply({id(module): (module, [_layer_patch(parts)])})
        merged = module(x)
        patcher.apply({id(module): (module, [_layer_patch(parts)])}, functional=True)
        assert torch.equal(module.weight, w0)
        functional = module(x)
        patcher.restore_all()
        assert not module._forward_hooks and torch.equal(module.weight, w0)
        plain_after = module(x)
    assert not patcher.failures
    assert (functional - merged).abs().max() <= 1e-5, (functional - merged).abs().max()
    assert not torch.equal(merged, plain_after)  # the network does change the output


# --------------------------------------------------------------------------- caches

def test_parsed_file_cache_follows_mtime_and_size(webui_session, data_dir, sd1, monkeypatch):
    shared = webui_session
    lora.clear_cache()
    state, factors = lf.random_lora(sd1, seed=41, te=False, unet_filter=lambda p: p.endswith("attn2.to_q"))
    path = write(data_dir, "changing", state)
    module = next(iter(factors))
    w0 = module.weight.detach().clone()
    reads = []
    real = network_file.load_network_file
    monkeypatch.setattr(network_file, "load_network_file", lambda *a, **k: reads.append(a) or real(*a, **k))

    def patched_weight():
        activate(shared, ["changing"])
        weight = module.weight.detach().clone()
        restore(shared)
        return weight

    first = patched_weight()
    assert torch.equal(patched_weight(), first) and len(reads) == 1  # unchanged file: reused
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))  # same bytes, newer mtime
    assert torch.equal(patched_weight(), first) and len(reads) == 2
    up, down, alpha = factors[module]
    new_state = dict(state)
    for key in [k for k in state if k.endswith("lora_up.weight")]:
        new_state[key] = state[key] * 2
    save_file(new_state, str(path), metadata={"pad": "x" * 64})  # the size changes too
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))  # the same mtime: caught by the size
    second = patched_weight()
    assert len(reads) == 3
    expected = lf.lora_reference(w0, up * 2, down, alpha, 1.0)
    assert (second - expected).abs().max() <= 1e-6
    assert torch.equal(module.weight, w0)


def test_delta_cache_respects_its_byte_limit():
    cache = patching.DeltaCache(limit_bytes=3 * 400)  # room for three 10x10 float32 deltas
    for i in range(3):
        cache.put(("k", i), torch.full((10, 10), float(i)))
    assert len(cache) == 3 and cache.bytes == 1200
    assert cache.get(("k", 0)) is not None  # now the most recently used
    cache.put(("k", 3), torch.zeros(10, 10))
    assert cache.get(("k", 1)) is None  # the least recently used went
    assert [cache.get(("k", i)) is not None for i in (0, 2, 3)] == [True, True, True]
    assert cache.bytes == 1200 <= cache.limit_bytes
    cache.put(("big",), torch.zeros(20, 20))  # 1600 bytes: larger than the whole cache, not kept
    assert cache.get(("big",)) is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_clear_cache_and_bit_identical_restore_with_caching(webui_session, data_dir, sd1, monkeypatch):
    shared = webui_session
    state, _ = lf.random_lora(sd1, seed=51)
    write(data_dir, "cachy", state)
    before = snapshot(sd1)
    lora.clear_cache()
    keep = {"lora_in_memory_limit": 2}
    first = run(shared, keep, prompt="a cat <lora:cachy:0.6>", steps=2)
    assert_same(sd1, before)
    assert len(lora._cache) == 1 and lora._last_used and len(lora.patcher.deltas) > 0
    second = run(shared, keep, prompt="a cat <lora:cachy:0.6>", steps=2)  # from the caches
    assert_same(sd1, before)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    lora.clear_cache()
    assert len(lora._cache) == 0 and lora._last_used == [] and len(lora.patcher.deltas) == 0
    assert lora.patcher.deltas.bytes == 0
    reads = []
    real = network_file.load_network_file
    monkeypatch.setattr(network_file, "load_network_file", lambda *a, **k: reads.append(a) or real(*a, **k))
    third = run(shared, keep, prompt="a cat <lora:cachy:0.6>", steps=2)
    assert len(reads) == 1  # read from disk again
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(third.images[0]))
    assert_same(sd1, before)
    shared.job_queue.run(lambda: lora.purge_cache(0))
