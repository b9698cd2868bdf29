"""Prompt schedules, AND and comments really change what the UNet receives, step by step."""
import pytest
import torch

from modules import conditioning, processing, sd_models


def use(shared, family):
    info = sd_models.find_checkpoint(f"tiny-{family}")
    return shared.job_queue.run(lambda: shared.model_holder.switch_to(info))


@pytest.fixture
def recorded(webui_session):
    """Runs a txt2img job and records the encoder_hidden_states of every UNet call."""
    shared = webui_session
    model = use(shared, "sd1")
    calls = []

    def hook(module, args, kwargs):
        calls.append(kwargs["encoder_hidden_states"].detach().clone())

    def run(prompt, negative="", steps=10, **kwargs):
        calls.clear()
        handle = model.unet.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            p = processing.StableDiffusionProcessingTxt2Img(
                prompt=prompt, negative_prompt=negative, steps=steps, width=64, height=64, seed=1,
                sampler_name="Euler", do_not_save_samples=True, **kwargs)
            processed = shared.job_queue.run(lambda: processing.process_images(p))
        finally:
            handle.remove()
        return processed, list(calls)

    def encode(text):
        return shared.job_queue.run(lambda: conditioning.encode(model, [text]))[0]

    return run, encode


def test_prompt_editing_switches_conditioning_at_the_scheduled_step(recorded):
    run, encode = recorded
    _, calls = run("[cat:dog:0.5]", steps=10)
    cat, dog, empty = encode("cat"), encode("dog"), encode("")
    assert len(calls) == 10  # Euler: one batched (cond + uncond) call per step
    used = ["cat" if torch.allclose(c[0], cat, atol=1e-5) else
            "dog" if torch.allclose(c[0], dog, atol=1e-5) else "?" for c in calls]
    # prompt-syntax.md §7: [a:b:0.5] with 10 steps is `a` for evaluations 1-6, `b` for 7-10
    assert used == ["cat"] * 6 + ["dog"] * 4
    assert all(torch.allclose(c[1], empty, atol=1e-5) for c in calls)  # the negative prompt


def test_alternation_changes_every_step(recorded):
    run, encode = recorded
    _, calls = run("[red|blue] ball", steps=6)
    red, blue = encode("red ball"), encode("blue ball")
    used = ["red" if torch.allclose(c[0], red, atol=1e-5) else
            "blue" if torch.allclose(c[0], blue, atol=1e-5) else "?" for c in calls]
    assert used == ["red", "red", "blue", "red", "blue", "red"]


def test_and_sub_prompts_are_separate_rows_with_weights(recorded):
    run, encode = recorded
    _, calls = run("forest AND river:0.7", steps=2)
    assert calls[0].shape[0] == 3  # two sub-prompts + the unconditional row
    assert torch.allclose(calls[0][0], encode("forest"), atol=1e-5)
    assert torch.allclose(calls[0][1], encode(" river"), atol=1e-5)


def test_comments_are_stripped_and_unknown_networks_reported(recorded):
    run, encode = recorded
    processed, calls = run("a cat # fluffy\nsitting <nosuchkind:x:1>", steps=2)
    assert processed.all_prompts[0] == "a cat \nsitting <nosuchkind:x:1>"
    assert torch.allclose(calls[0][0], encode("a cat \nsitting "), atol=1e-5)
    assert "Unknown network type: nosuchkind" in processed.comments


def test_conditioning_cache_skips_the_text_encoder(webui_session, recorded):
    run, _ = recorded
    model = webui_session.model_holder.sd_model
    counted = []
    handle = model.text_encoders[0].register_forward_hook(lambda *a: counted.append(1))
    try:
        run("a lighthouse", "fog", steps=3)
        first = len(counted)
        run("a lighthouse", "fog", steps=3)
        assert first == 2 and len(counted) == first  # the second job reuses the conds
        run("a lighthouse", "fog", steps=4)  # another step count: schedules may differ
        assert len(counted) == first + 2
    finally:
        handle.remove()


def test_embedding_from_the_folder_is_used_and_hashed(webui_session, data_dir, recorded):
    import hashlib
    from safetensors.torch import save_file
    run, encode = recorded
    folder = data_dir / "embeddings"
    folder.mkdir(exist_ok=True)
    path = folder / "inkwashstyle.safetensors"
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(0))}, str(path))
    try:
        processed, calls = run("a inkwashstyle cat", steps=2)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert f'TI hashes: "inkwashstyle: {digest}"' in processed.infotexts[0]
        assert not torch.allclose(calls[0][0], encode("a cat"), atol=1e-3)
        db = webui_session.embedding_db
        assert db.word_embeddings["inkwashstyle"].vectors == 2
    finally:
        path.unlink()
