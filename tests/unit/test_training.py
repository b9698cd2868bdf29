"""Training on tiny models, in this process, through the queue: schedules, buckets, embedding
create/train/resume/interrupt, LoRA train/resume and its kohya file (merge-train.md §9)."""
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from modules.training import buckets, datasets, learn_schedule


# ----------------------------------------------------------------------------------- pure parts

def test_learn_rate_schedule_items_and_end():
    s = learn_schedule.LearnRateScheduler("0.005:100, 1e-5:1000, 1e-5", max_steps=5000)
    assert s.items == [(0.005, 100), (1e-5, 1000), (1e-5, 5000)]
    s.step(99)
    assert s.learn_rate == 0.005 and not s.finished
    s.step(100)
    assert s.learn_rate == 1e-5
    alone = learn_schedule.LearnRateScheduler("0.005:100", max_steps=100000)
    alone.step(100)
    assert alone.finished  # the schedule alone ends training at 100
    resumed = learn_schedule.LearnRateScheduler("0.1:10, 0.01:20", max_steps=30, start_step=10)
    assert resumed.items == [(0.01, 20)]
    assert learn_schedule.parse_schedule("0.1:999", max_steps=50) == [(0.1, 50)]
    assert learn_schedule.parse_schedule(0.02, max_steps=5) == [(0.02, 5)]  # ours: a number is accepted
    for bad in ("", "abc", "0.1:1.5", "0.1:5"):
        with pytest.raises(learn_schedule.ScheduleError, match="Invalid learning rate schedule"):
            learn_schedule.parse_schedule(bad, max_steps=10, start_step=5)


def test_buckets_follow_kohyas_rule():
    got = buckets.make_buckets((512, 512), 256, 1024, 64)
    expected = {(512, 512)}
    for w in range(256, 1025, 64):  # independent re-statement of §6.2
        h = min(1024, (512 * 512) // w // 64 * 64)
        if h >= 256:
            expected |= {(w, h), (h, w)}
    assert set(got) == expected and (256, 1024) in got and (768, 320) in got
    assert buckets.nearest_bucket((1000, 600), got) == min(got, key=lambda b: abs(b[0] / b[1] - 1000 / 600))
    image, crop = buckets.fit_to_bucket(Image.new("RGB", (100, 50)), (64, 64))
    assert image.size == (64, 64) and crop == (0, (128 - 64) // 2)
    assert buckets.no_upscale_bucket((300, 200), (512, 512)) == (256, 192)


def test_captions_and_repeat_folders(tmp_path):
    (tmp_path / "5_sks dog").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "5_sks dog" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "5_sks dog" / "b.jpg")
    (tmp_path / "5_sks dog" / "b.caption").write_text("dog on grass\nsecond line")
    (tmp_path / "ignored").mkdir()
    assert datasets.concept_folders(str(tmp_path)) == [(str(tmp_path / "5_sks dog"), 5, "sks dog")]
    folder = tmp_path / "5_sks dog"
    assert datasets.lora_caption(str(folder / "a.png"), "sks dog") == "sks dog"
    assert datasets.lora_caption(str(folder / "b.jpg"), "sks dog") == "dog on grass"
    (folder / "a.txt").write_text("")
    with pytest.raises(datasets.DatasetError, match="empty"):
        datasets.lora_caption(str(folder / "a.png"), "x")
    assert datasets.caption_from_filename("/x/00012-a red fox.png") == "a red fox"
    assert datasets.process_tags("a,b,c", False, 0.0, __import__("random").Random(0)) == "a,b,c"


def test_alpha_weight_has_no_nan_and_keeps_orientation():
    opaque = Image.new("RGBA", (64, 32), (0, 0, 0, 255))
    assert torch.equal(datasets.alpha_weight(opaque, (4, 8)), torch.ones(4, 4, 8))
    half = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    half.paste((0, 0, 0, 255), (0, 0, 32, 32))  # left half opaque
    w = datasets.alpha_weight(half, (4, 8))
    assert w.shape == (4, 4, 8) and w[0, :, 0].min() > w[0, :, 7].max()


# ---------------------------------------------------------------------------- on the tiny models

@pytest.fixture(scope="module")
def session(webui_session, tmp_path_factory):
    shared = webui_session
    made = []
    yield shared, made
    for path in made:  # leave the shared data folder as other tests expect it
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    shared.job_queue.run(lambda: shared.embedding_db.load_textual_inversion_embeddings(None, force_reload=True))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(root / f"{i:03d}-a red fox.png")
    return root


@pytest.fixture(scope="module")
def one_line_template(session):
    shared, made = session
    from modules.training.templates import templates_dir
    path = os.path.join(templates_dir(shared.cmd_opts), "test_name_only.txt")
    with open(path, "w") as file:
        file.write("[name]\n")
    made.append(path)
    return "test_name_only.txt"


def on_model(shared, checkpoint, fn):
    def job():
        with shared.opts.override({"sd_model_checkpoint": checkpoint}):
            return fn()
    return shared.job_queue.run(job, name="test")


def weights(model):
    parts = {"unet": model.unet, "vae": model.vae, **{f"te{i}": t for i, t in enumerate(model.text_encoders)}}
    return {f"{p}.{k}": v.detach().clone() for p, m in parts.items() for k, v in m.state_dict().items()}


def same_weights(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def evaluation_loss(model, prompt, folder):
    """Mean ε-MSE over fixed (t, ε) pairs for the deterministic latents of the folder's images."""
    from modules import conditioning
    gen = torch.Generator().manual_seed(1234)
    means = []
    for path in sorted(os.listdir(folder)):
        pixels = torch.from_numpy(np.asarray(Image.open(os.path.join(folder, path)).convert("RGB"), dtype=np.float32) / 127.5 - 1)
        with torch.no_grad():
            means.append(model.vae.encode(pixels.permute(2, 0, 1)[None]).latent_dist.mean)
    x0 = torch.cat(means).repeat(16, 1, 1, 1) * model.vae_scaling_factor
    t = torch.randint(0, 1000, (len(x0),), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        cond = conditioning.encode(model, [prompt] * len(x0))
        pred = model.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=cond).sample
    return float(((pred - noise) ** 2).mean())


def txt2img(shared, prompt, checkpoint="tiny-sd1"):
    from modules import processing
    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, steps=3, width=64, height=64, seed=7,
                                                    do_not_save_samples=True, do_not_save_grid=True)
    return np.asarray(on_model(shared, checkpoint, lambda: processing.process_images(p)).images[0], dtype=np.int16)


def test_create_embedding_file(session):
    shared, made = session
    from modules.training import embedding as te
    path = on_model(shared, "tiny-sd1", lambda: te.create_embedding("test-created", 2, False, "*"))
    made.append(path)
    data = torch.load(path, weights_only=True)
    assert data["string_to_token"] == {"*": 265} and data["step"] == 0 and data["name"] == "test-created"
    vec = data["string_to_param"]["*"]
    model = shared.model_holder.sd_model
    star = model.tokenizers[0]("*", add_special_tokens=False)["input_ids"]
    table = model.text_encoders[0].get_input_embeddings().weight
    assert vec.shape == (2, 32) and torch.equal(vec[0], table[star[0]]) and torch.equal(vec[1], table[star[0]])
    assert "test-created" in shared.embedding_db.word_embeddings
    with pytest.raises(te.TrainingError, match="already exists"):
        on_model(shared, "tiny-sd1", lambda: te.create_embedding("test-created", 2, False))
    three = on_model(shared, "tiny-sd1", lambda: te.create_embedding("test-three", 4, True, "red fox cat"))
    made.append(three)
    ids = model.tokenizers[0]("red fox cat", add_special_tokens=False)["input_ids"]
    vec = torch.load(three, weights_only=True)["string_to_param"]["*"]
    assert [int(torch.argmin(((table - v) ** 2).sum(1))) for v in vec] == [ids[i * len(ids) // 4] for i in range(4)]


def test_train_embedding_lowers_loss_keeps_model_and_resumes(session, images, one_line_template):
    shared, made = session
    from modules.training import embedding as te
    from modules.training import progress
    name = "test-trained"
    path = on_model(shared, "tiny-sd1", lambda: te.create_embedding(name, 2, True, "*"))
    made.append(path)
    made.append(path + ".optim")
    model = shared.model_holder.sd_model
    before = weights(model)
    image_before, other_before = txt2img(shared, f"a photo of {name}"), txt2img(shared, "a photo of a house")
    loss_before = evaluation_loss(model, name, images)
    log_dir = os.path.join(str(images), "..", "ti_log")
    args = te.TrainEmbeddingArgs(embedding_name=name, learn_rate="0.05", data_root=str(images), log_directory=log_dir,
                                 training_width=64, training_height=64, steps=60, template_filename=one_line_template,
                                 create_image_every=0, save_embedding_every=20, seed=0)

    def job():
        with shared.opts.override({"sd_model_checkpoint": "tiny-sd1", "training_write_csv_every": 10}):
            return te.train_embedding(args)
    message, final = shared.job_queue.run(job, name="train_embedding")
    assert message.startswith("Training finished at 60 steps") and final == path
    losses = [loss for _, loss in progress.current().losses]
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert same_weights(before, weights(model))
    data = torch.load(path, weights_only=True)
    assert data["step"] == 60
    assert evaluation_loss(model, name, images) < loss_before
    day = te.log_folder(log_dir, name)
    assert sorted(os.listdir(os.path.join(day, "embeddings"))) == [f"{name}-20.pt", f"{name}-40.pt", f"{name}-60.pt"]
    assert torch.load(os.path.join(day, "embeddings", f"{name}-20.pt"), weights_only=True)["step"] == 20
    rows = open(os.path.join(day, "textual_inversion_loss.csv")).read().splitlines()
    assert rows[0] == "step,epoch,epoch_step,loss,learn_rate" and [r.split(",")[0] for r in rows[1:]] == \
        ["10", "20", "30", "40", "50", "60"]
    # the reloaded file changes images whose prompt names it, and only those
    assert np.abs(txt2img(shared, f"a photo of {name}") - image_before).max() > 0
    assert np.array_equal(txt2img(shared, "a photo of a house"), other_before)

    # resume: a rerun with a higher max continues at 60 with the optimizer state it saved
    args.steps, args.save_embedding_every = 70, 0
    message, _ = shared.job_queue.run(job, name="train_embedding")
    assert message.startswith("Training finished at 70 steps")
    assert [s for s, _ in progress.current().losses] == list(range(61, 71))
    optim = torch.load(path + ".optim", weights_only=True)
    assert optim["hash"] == te.vec_checksum(torch.load(path, weights_only=True)["string_to_param"]["*"])
    assert int(optim["optimizer_state_dict"]["state"][0]["step"]) == 70  # 60 restored + 10 new
    message, _ = shared.job_queue.run(job, name="train_embedding")
    assert "already been trained beyond" in message


def test_interrupt_stops_within_a_step_and_saves(session, images, one_line_template):
    shared, made = session
    from modules.training import embedding as te
    name = "test-interrupted"
    path = on_model(shared, "tiny-sd1", lambda: te.create_embedding(name, 1, True, "*"))
    made += [path, path + ".optim"]
    args = te.TrainEmbeddingArgs(embedding_name=name, learn_rate="0.01", data_root=str(images), log_directory="",
                                 training_width=64, training_height=64, steps=100000, template_filename=one_line_template,
                                 create_image_every=0, save_embedding_every=0, seed=0)
    job = shared.job_queue.submit(lambda: te.train_embedding(args), name="train_embedding")
    seen = []
    deadline = time.time() + 60
    while shared.state.job_no < 3 and time.time() < deadline:
        if shared.state.job == "train-embedding":
            seen.append((shared.state.job_no, shared.state.textinfo))
        time.sleep(0.01)
    at = shared.state.job_no
    shared.state.interrupt()
    message, _ = job.future.result(timeout=60)
    step = torch.load(path, weights_only=True)["step"]
    assert message.startswith("Training interrupted at") and at <= step <= at + 1 < 100000
    assert any("Step:" in (text or "") for _, text in seen)
    assert os.path.exists(path + ".optim")  # an interrupted run keeps its optimizer for the resume
    assert txt2img(shared, "a fox").shape == (64, 64, 3)  # the queue serves the next generation


# ---------------------------------------------------------------------------------------- LoRA

@pytest.fixture(scope="module")
def lora_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_data")
    folder = root / "2_sks fox"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(folder / "a.png")
    (folder / "a.txt").write_text("a photo of sks fox, red")
    return root


def lora_args(data, **extra):
    from modules.training.lora import LoraTrainArgs
    values = dict(train_data_dir=str(data), network_dim=4, network_alpha=2, resolution="64", min_bucket_reso=32,
                  max_bucket_reso=128, bucket_reso_steps=32, learning_rate=1e-2, text_encoder_lr=1e-3, seed=0,
                  save_precision="float", lr_scheduler="cosine", lr_warmup_steps=2)
    values.update(extra)
    return LoraTrainArgs(**values)


def test_lora_training_writes_a_kohya_file(session, lora_data):
    shared, made = session
    from safetensors import safe_open

    from modules.training import lora, lora_network, progress
    model = on_model(shared, "tiny-sd1", lambda: shared.model_holder.ensure_for_job())
    before = weights(model)
    image_before = txt2img(shared, "a photo of sks fox")
    args = lora_args(lora_data, output_name="test-lora", max_train_steps=40, network_train_unet_only=False,
                     save_every_n_steps=20)
    message, path = on_model(shared, "tiny-sd1", lambda: lora.train_lora(args))
    made += [path, path.replace(".safetensors", "-step00000020.safetensors"), lora.state_dir("test-lora")]
    assert message.startswith("Training finished at 40 steps") and path == os.path.join(lora.lora_dir(), "test-lora.safetensors")
    assert os.path.exists(made[1])
    losses = [loss for _, loss in progress.current().losses]
    assert len(losses) == 40 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert same_weights(before, weights(model))
    assert np.array_equal(txt2img(shared, "a photo of sks fox"), image_before)  # no adapters left behind
    with safe_open(path, "pt") as file:
        meta = file.metadata()
        tensors = {k: file.get_tensor(k) for k in file.keys()}
    assert all(lora_network.KOHYA_KEY.match(k) for k in tensors)
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    for name in modules:
        assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= set(tensors)
        assert tensors[f"{name}.alpha"].ndim == 0 and float(tensors[f"{name}.alpha"]) == 2.0
    assert any(m.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q") for m in modules)
    assert any(m.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for m in modules)
    # 4 transformers (1 down, 1 mid, 2 up) x 12 targets = 48 UNet modules, 2 CLIP layers x 6 = 12
    assert sum(m.startswith("lora_unet_") for m in modules) == 48 and sum(m.startswith("lora_te_") for m in modules) == 12
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0" and meta["ss_network_module"] == "networks.lora"
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_output_name"] == "test-lora" and meta["ss_steps"] == "40"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora" and meta["ss_v2"] == "False"
    assert __import__("json").loads(meta["ss_dataset_dirs"]) == {"2_sks fox": {"n_repeats": 2, "img_count": 1}}
    assert __import__("json").loads(meta["ss_tag_frequency"]) == {"2_sks fox": {"a photo of sks fox": 1, "red": 1}}
    expected_hash, _ = lora_network.model_hashes(tensors, {k: v for k, v in meta.items() if k.startswith("ss_")})
    assert meta["sshs_model_hash"] == expected_hash and re.fullmatch(r"[0-9a-f]{64}", expected_hash)
    check_with_diffusers(path, tensors)
    check_with_our_loader(shared, "tiny-sd1", "test-lora", tensors)

    # resume continues the step count and the optimizer state
    args = lora_args(lora_data, output_name="test-lora", max_train_steps=50, network_train_unet_only=False, resume=True)
    message, _ = on_model(shared, "tiny-sd1", lambda: lora.train_lora(args))
    assert message.startswith("Training finished at 50 steps")
    assert [s for s, _ in progress.current().losses] == list(range(41, 51))
    state = torch.load(os.path.join(lora.state_dir("test-lora"), "train_state.pth"), weights_only=True)
    assert state["step"] == 50 and int(state["optimizer"]["state"][0]["step"]) == 50


def check_with_our_loader(shared, checkpoint, name, tensors):
    """The new file is listed without a refresh, and our LoRA loader (modules.networks) matches every
    module of it to a layer of the loaded model and patches W + (alpha/r)·up@down into it."""
    from modules.networks import keymap
    from modules.networks import lora as networks_lora

    def job():
        model = shared.model_holder.ensure_for_job()
        assert networks_lora.registry.find(name) is not None
        table = keymap.module_table(model)
        modules = {k.split(".")[0] for k in tensors}
        originals = {m: table[m].module.weight.detach().clone() for m in modules if m in table}
        report = networks_lora.load_networks([name], model=model)
        try:
            assert not report.not_found and not report.failed_to_load and not report.refused
            assert report.unmatched == {} and report.errors == {}
            assert set(report.networks[0].modules) == modules == set(originals)
            for module_name, target in report.networks[0].modules.items():
                down, up = tensors[f"{module_name}.lora_down.weight"], tensors[f"{module_name}.lora_up.weight"]
                scale = float(tensors[f"{module_name}.alpha"]) / down.shape[0]
                expected = originals[module_name] + (up.flatten(1) @ down.flatten(1)).reshape(
                    originals[module_name].shape) * scale
                assert torch.allclose(target.module.weight, expected, atol=1e-5), module_name
        finally:
            networks_lora.load_networks([], model=model)
        assert all(torch.equal(table[m].module.weight, w) for m, w in originals.items())  # restored bit for bit

    on_model(shared, checkpoint, job)


def check_with_diffusers(path, tensors):
    """diffusers' kohya reader loads the file onto a fresh copy of the tiny model, and fusing gives
    W + (alpha/r)·up@down for every module in the file (so every key reached a module)."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from modules.models.clip_tokenizer import load_clip_tokenizer
    from modules.tiny_models import build_tiny_models
    from modules.training import lora_network
    built = build_tiny_models("sd1", seed=0)
    pipe = StableDiffusionPipeline(vae=built["vae"], text_encoder=built["text_encoders"][0], tokenizer=load_clip_tokenizer(),
                                   unet=built["unet"], scheduler=DDPMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    names = {}
    for prefix, module in (("unet", pipe.unet), ("te", pipe.text_encoder)):
        for path_, child in module.named_modules():
            if isinstance(child, (torch.nn.Linear, torch.nn.Conv2d)):
                kohya = lora_network.unet_module_name(path_, False, None) if prefix == "unet" else \
                    "lora_te_text_model_" + path_.removeprefix("text_model.").replace(".", "_")
                names[kohya] = (module, path_)
    originals = {k: m.get_submodule(p).weight.detach().clone() for k, (m, p) in names.items()}
    pipe.load_lora_weights(path)
    pipe.fuse_lora(lora_scale=1.0)
    modules = {k.split(".")[0] for k in tensors}
    for name in modules:
        module, path_ = names[name]
        down, up = tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"]
        scale = float(tensors[f"{name}.alpha"]) / down.shape[0]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(originals[name].shape) * scale
        fused = module.get_submodule(path_).get_base_layer().weight if hasattr(module.get_submodule(path_), "get_base_layer") \
            else module.get_submodule(path_).weight
        assert torch.allclose(fused, originals[name] + delta, atol=1e-6), name


def test_sdxl_lora_names_and_loss(session, lora_data):
    shared, made = session
    from safetensors import safe_open

    from modules.training import lora, progress
    model = on_model(shared, "tiny-sdxl", lambda: shared.model_holder.ensure_for_job())
    before = weights(model)
    args = lora_args(lora_data, output_name="test-lora-xl", max_train_steps=60, network_train_unet_only=False,
                     save_state=False)
    message, path = on_model(shared, "tiny-sdxl", lambda: lora.train_lora(args))
    made.append(path)
    losses = [loss for _, loss in progress.current().losses]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert same_weights(before, weights(model))
    with safe_open(path, "pt") as file:
        keys, meta = list(file.keys()), file.metadata()
        tensors = {k: file.get_tensor(k) for k in keys}
    check_with_our_loader(shared, "tiny-sdxl", "test-lora-xl", tensors)
    assert any(k.startswith("lora_unet_input_blocks_") for k in keys) and any(k.startswith("lora_unet_middle_block_1_") for k in keys)
    assert any(k.startswith("lora_te1_text_model_") for k in keys) and any(k.startswith("lora_te2_text_model_") for k in keys)
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"


def test_lora_validation_names_the_field(session, lora_data):
    shared, _ = session
    from modules.training import lora
    from modules.training.embedding import TrainingError
    for bad, field in ((dict(network_dim=0), "network_dim"), (dict(lr_scheduler="cyclic"), "lr_scheduler"),
                       (dict(resolution="abc"), "resolution"), (dict(train_data_dir="/nonexistent"), "train_data_dir"),
                       (dict(num_class_images=3), "class_prompt")):
        with pytest.raises(TrainingError, match=field):
            on_model(shared, "tiny-sd1", lambda: lora.train_lora(lora_args(lora_data, **bad)))
    assert threading.current_thread() is threading.main_thread()


def test_objective_targets_eps_and_v():
    from modules.training import objective
    x0, noise = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 500, 999])
    alphas = torch.linspace(0.99, 0.01, 1000)
    x_t, eps = objective.noisy_latents_and_target(x0, noise, t, alphas, "eps")
    a = alphas[t].view(-1, 1, 1, 1)
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise) and torch.equal(eps, noise)
    _, v = objective.noisy_latents_and_target(x0, noise, t, alphas, "v")
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0)


def test_prior_preservation_makes_class_images_and_samples(session, lora_data, tmp_path):
    shared, made = session
    import datetime

    from safetensors import safe_open

    from modules.training import lora
    reg = tmp_path / "reg"
    args = lora_args(lora_data, output_name="test-dreambooth", max_train_steps=4, network_train_unet_only=True,
                     save_state=False, reg_data_dir=str(reg), class_prompt="a photo of a fox", num_class_images=2,
                     prior_loss_weight=0.5, sample_prompts="sks fox --w 64 --h 64 --s 2 --d 5",
                     sample_every_n_steps=2)
    message, path = on_model(shared, "tiny-sd1", lambda: lora.train_lora(args))
    samples = os.path.join(shared.paths.data, "textual_inversion", datetime.date.today().isoformat(), "test-dreambooth")
    made += [path, samples]
    assert sorted(os.listdir(reg)) == ["class-00000.png", "class-00000.txt", "class-00001.png", "class-00001.txt"]
    assert (reg / "class-00000.txt").read_text() == "a photo of a fox"
    assert sorted(os.listdir(os.path.join(samples, "sample"))) == ["test-dreambooth_000002_00.png",
                                                                    "test-dreambooth_000004_00.png"]
    with safe_open(path, "pt") as file:
        meta = file.metadata()
    assert meta["ss_num_reg_images"] == "2" and meta["ss_prior_loss_weight"] == "0.5"
    stamp = os.path.getmtime(reg / "class-00000.png")
    on_model(shared, "tiny-sd1", lambda: lora.train_lora(args))  # enough class images now: none made
    assert os.path.getmtime(reg / "class-00000.png") == stamp and len(os.listdir(reg)) == 4


def test_sdxl_embedding_has_both_encoders_and_trains(session, images, one_line_template):
    shared, made = session
    from modules.training import embedding as te
    path = on_model(shared, "tiny-sdxl", lambda: te.create_embedding("test-xl-emb", 2, True, "fox"))
    made += [path, path + ".optim"]
    data = torch.load(path, weights_only=True)
    assert data["clip_l"].shape == (2, 32) and data["clip_g"].shape == (2, 48) and data["step"] == 0
    model = shared.model_holder.sd_model
    before = weights(model)
    args = te.TrainEmbeddingArgs(embedding_name="test-xl-emb", learn_rate="0.05", data_root=str(images), log_directory="",
                                 training_width=64, training_height=64, steps=10, template_filename=one_line_template,
                                 create_image_every=0, save_embedding_every=0, seed=0)
    message, _ = on_model(shared, "tiny-sdxl", lambda: te.train_embedding(args))
    trained = torch.load(path, weights_only=True)
    assert message.startswith("Training finished at 10 steps") and trained["step"] == 10
    assert not torch.equal(trained["clip_l"], data["clip_l"]) and not torch.equal(trained["clip_g"], data["clip_g"])
    assert same_weights(before, weights(model))


# -------------------------------------------------------------------------------- hypernetworks

def hypernetwork_eval_loss(shared, model, path, prompt, folder):
    """evaluation_loss with the file applied through the loader's own to_k / to_v hooks."""
    from modules.networks import hypernetworks as hnf
    hooks = hnf.HypernetworkHooks()
    hooks.install(model.unet, [hnf.load_hypernetwork_file(path)], model.device_config.device)
    try:
        return evaluation_loss(model, prompt, folder)
    finally:
        hooks.remove()


def test_create_hypernetwork_writes_a1111_format(session):
    shared, made = session
    from modules.networks import hypernetworks as hnf
    from modules.training import hypernetwork as th
    from modules.training.embedding import TrainingError
    path = on_model(shared, "tiny-sd1", lambda: th.create_hypernetwork("test-hn-created", [32, "16"], False, "1, 2, 1",
                                                                     "relu", "Normal", True, True, "0, 0.1, 0"))
    made.append(path)
    assert path == os.path.join(hnf.hypernetwork_folder(), "test-hn-created.pt")
    data = torch.load(path, weights_only=True)
    assert sorted(k for k in data if isinstance(k, int)) == [16, 32]
    sk, sv = data[32]
    assert sk["linear.0.weight"].shape == (64, 32) and sk["linear.4.weight"].shape == (32, 64)  # Linear ReLU LN Dropout Linear LN
    assert float(sk["linear.0.weight"].std()) == pytest.approx(0.01, rel=0.2) and not sk["linear.0.bias"].any()
    assert float(sk["linear.2.weight"].abs().max()) < 0.1  # LayerNorm weight N(0, 0.01) as A1111
    assert data["layer_structure"] == [1.0, 2.0, 1.0] and data["activation_func"] == "relu"
    assert data["is_layer_norm"] is True and data["use_dropout"] is True and data["dropout_structure"] == [0.0, 0.1, 0.0]
    assert data["activate_output"] is False and data["step"] == 0 and data["name"] == "test-hn-created"
    assert data["weight_initialization"] == "Normal"
    assert hnf.hypernetworks["test-hn-created"] == path  # listed without a refresh
    loaded = hnf.load_hypernetwork_file(path)
    assert torch.equal(loaded.layers[32][0].state_dict()["linear.0.weight"], sk["linear.0.weight"])
    # Kaiming / Xavier: zero biases, weights of the right scale
    kaiming = on_model(shared, "tiny-sd1", lambda: th.create_hypernetwork("test-hn-kaiming", [32], True,
                                                                        [1, 1], "leakyrelu", "KaimingNormal"))
    made.append(kaiming)
    w = torch.load(kaiming, weights_only=True)[32][0]["linear.0.weight"]
    assert float(w.std()) == pytest.approx((2 / (1 + 0.01 ** 2)) ** 0.5 / 32 ** 0.5, rel=0.25)
    with pytest.raises(TrainingError, match="already exists"):
        on_model(shared, "tiny-sd1", lambda: th.create_hypernetwork("test-hn-created", [32]))
    for kwargs, field in ((dict(layer_structure="2, 1"), "layer_structure"), (dict(enable_sizes=[]), "enable_sizes"),
                          (dict(activation_func="threshold"), "activation_func"), (dict(weight_init="Ones"), "weight_init"),
                          (dict(use_dropout=True, dropout_structure="0, 1.5, 0"), "dropout_structure")):
        values = {"name": "test-hn-bad", "enable_sizes": [32], "overwrite_old": True, **kwargs}
        with pytest.raises(TrainingError, match=field):
            th.create_hypernetwork(**values)
    assert not os.path.exists(os.path.join(hnf.hypernetwork_folder(), "test-hn-bad.pt"))


def test_train_hypernetwork_lowers_loss_applies_through_loader_and_resumes(session, images):
    shared, made = session
    from modules.networks import hypernetworks as hnf
    from modules.training import hypernetwork as th
    from modules.training import progress
    name = "test-hn-trained"
    path = on_model(shared, "tiny-sd1", lambda: th.create_hypernetwork(name, [32, 16], True, "1, 2, 1", "linear"))
    made += [path, path + ".optim"]
    model = on_model(shared, "tiny-sd1", lambda: shared.model_holder.ensure_for_job())
    before = weights(model)
    loss_before = hypernetwork_eval_loss(shared, model, path, "a red fox", images)
    image_before = txt2img(shared, f"a red fox <hypernet:{name}:1>")
    log_dir = os.path.join(str(images), "..", "hn_log")
    made.append(os.path.abspath(log_dir))
    args = th.TrainHypernetworkArgs(hypernetwork_name=name, learn_rate="0.005", data_root=str(images),
                                    log_directory=log_dir, training_width=64, training_height=64, steps=40,
                                    template_filename="hypernetwork.txt", create_image_every=20,
                                    save_hypernetwork_every=20, seed=0, preview_from_txt2img=True,
                                    preview_prompt="a red fox", preview_steps=2, preview_width=64, preview_height=64,
                                    preview_seed=3)

    def job():
        with shared.opts.override({"sd_model_checkpoint": "tiny-sd1", "training_write_csv_every": 10}):
            return th.train_hypernetwork(args)
    message, final = shared.job_queue.run(job, name="train_hypernetwork")
    assert message.startswith("Training finished at 40 steps") and final == path
    run = progress.current()
    assert run.kind == "train-hypernetwork" and len(run.previews) == 2
    losses = [loss for _, loss in run.losses]
    assert len(losses) == 40 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert same_weights(before, weights(model))  # only the MLPs are trained
    data = torch.load(path, weights_only=True)
    assert data["step"] == 40 and sorted(k for k in data if isinstance(k, int)) == [16, 32]
    assert data["sd_checkpoint_name"] and data["sd_checkpoint"]
    assert hypernetwork_eval_loss(shared, model, path, "a red fox", images) < loss_before
    day = th.log_folder(log_dir, name)
    assert sorted(os.listdir(os.path.join(day, "hypernetworks"))) == [f"{name}-20.pt", f"{name}-40.pt"]
    assert torch.load(os.path.join(day, "hypernetworks", f"{name}-20.pt"), weights_only=True)["step"] == 20
    assert sorted(os.listdir(os.path.join(day, "images"))) == [f"{name}-20.png", f"{name}-40.png"]
    rows = open(os.path.join(day, "hypernetwork_loss.csv")).read().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "20", "30", "40"]

    # the trained file, through our loader, feeds to_k / to_v with c + MLP(c)
    loaded = hnf.load_hypernetwork_file(path)
    seen = {}
    attention = next(m for m in model.unet.modules() if hasattr(m, "to_k") and m.to_k.in_features == 32
                     and getattr(m, "is_cross_attention", False))
    hooks = hnf.HypernetworkHooks()
    hooks.install(model.unet, [loaded], model.device_config.device)
    # pre-hooks run in registration order: these see what to_k / to_v receive after the MLPs
    handles = [attention.to_k.register_forward_pre_hook(lambda _m, a: seen.__setitem__("k", a[0].detach().clone())),
               attention.to_v.register_forward_pre_hook(lambda _m, a: seen.__setitem__("v", a[0].detach().clone()))]
    context = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model.unet(torch.randn(1, 4, 8, 8), torch.tensor([500]), encoder_hidden_states=context)
    finally:
        hooks.remove()
        for h in handles:
            h.remove()
    sk, sv = data[32]
    for key, sd in (("k", sk), ("v", sv)):
        expected = context + (context @ sd["linear.0.weight"].T + sd["linear.0.bias"]) @ sd["linear.1.weight"].T \
            + sd["linear.1.bias"]
        assert torch.allclose(seen[key], expected, atol=1e-5)
        assert not torch.allclose(seen[key], context, atol=1e-4)
    assert np.abs(txt2img(shared, f"a red fox <hypernet:{name}:1>") - image_before).max() > 0  # new file re-read

    # resume: 40 -> 50 with the optimizer the .optim names
    args.steps, args.save_hypernetwork_every, args.create_image_every = 50, 0, 0
    message, _ = shared.job_queue.run(job, name="train_hypernetwork")
    assert message.startswith("Training finished at 50 steps")
    assert [s for s, _ in progress.current().losses] == list(range(41, 51))
    optim = torch.load(path + ".optim", weights_only=True)
    assert optim["hash"] == th.file_hash(path) and optim["optimizer_name"] == "AdamW"
    assert int(optim["optimizer_state_dict"]["state"][0]["step"]) == 50
    assert optim["optimizer_state_dict"]["param_groups"][0]["weight_decay"] == 0.01
    message, _ = shared.job_queue.run(job, name="train_hypernetwork")
    assert "already been trained beyond" in message


def test_interrupt_hypernetwork_training_saves_file_and_optimizer(session, images):
    shared, made = session
    from modules.training import hypernetwork as th
    name = "test-hn-interrupted"
    path = on_model(shared, "tiny-sd1", lambda: th.create_hypernetwork(name, [32], True))
    made += [path, path + ".optim"]
    args = th.TrainHypernetworkArgs(hypernetwork_name=name, learn_rate="0.001", data_root=str(images), log_directory="",
                                    training_width=64, training_height=64, steps=100000, create_image_every=0,
                                    save_hypernetwork_every=0, seed=0)

    def job():
        with shared.opts.override({"sd_model_checkpoint": "tiny-sd1"}):
            return th.train_hypernetwork(args)
    running = shared.job_queue.submit(job, name="train_hypernetwork")
    deadline = time.time() + 60
    while not (shared.state.job == "train-hypernetwork" and shared.state.job_no >= 2) and time.time() < deadline:
        time.sleep(0.01)
    at = shared.state.job_no
    shared.state.interrupt()
    message, _ = running.future.result(timeout=60)
    step = torch.load(path, weights_only=True)["step"]
    assert message.startswith("Training interrupted at") and at <= step <= at + 1
    assert torch.load(path + ".optim", weights_only=True)["hash"] == th.file_hash(path)
    assert txt2img(shared, f"a fox <hypernet:{name}:1>").shape == (64, 64, 3)


def test_sdxl_hypernetwork_trains_on_the_block_widths(session, images):
    shared, made = session
    from modules.training import hypernetwork as th
    model = on_model(shared, "tiny-sdxl", lambda: shared.model_holder.ensure_for_job())
    widths = sorted(th.attention_widths(model.unet))
    name = "test-hn-xl"
    path = on_model(shared, "tiny-sdxl", lambda: th.create_hypernetwork(name, widths, True))
    made += [path, path + ".optim"]
    args = th.TrainHypernetworkArgs(hypernetwork_name=name, learn_rate="0.001", data_root=str(images), log_directory="",
                                    training_width=64, training_height=64, steps=5, create_image_every=0,
                                    save_hypernetwork_every=0, seed=0)
    before = torch.load(path, weights_only=True)
    message, _ = on_model(shared, "tiny-sdxl", lambda: th.train_hypernetwork(args))
    after = torch.load(path, weights_only=True)
    assert message.startswith("Training finished at 5 steps") and after["step"] == 5
    for width in widths:
        assert not torch.equal(before[width][0]["linear.0.weight"], after[width][0]["linear.0.weight"])
