"""The training routes over real HTTP: create/train embedding (A1111's fields and answers), progress
and interrupt during training, generation waiting on the queue, POST /train/lora (kohya names)."""
import os
import shutil
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image


TRAIN_FIELDS = {  # the 30 fields A1111's /train/embedding requires
    "id_task": "x", "learn_rate": "0.05", "batch_size": 1, "gradient_step": 1, "log_directory": "textual_inversion",
    "training_width": 64, "training_height": 64, "varsize": False, "steps": 12, "clip_grad_mode": "disabled",
    "clip_grad_value": "0.1", "shuffle_tags": False, "tag_drop_out": 0, "latent_sampling_method": "once",
    "use_weight": False, "create_image_every": 0, "save_embedding_every": 0, "template_filename": "subject.txt",
    "save_image_with_stored_embedding": False, "preview_from_txt2img": False, "preview_prompt": "",
    "preview_negative_prompt": "", "preview_steps": 20, "preview_sampler_name": "Euler a", "preview_cfg_scale": 7,
    "preview_seed": -1, "preview_width": 64, "preview_height": 64,
}


@pytest.fixture(scope="module")
def train_server(server, data_dir, tmp_path_factory):
    """The session's server on tiny SD1, with a dataset; what training writes is removed afterwards."""
    images = tmp_path_factory.mktemp("train_api") / "dataset" / "3_sks fox"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text("a photo of sks fox")
    assert post(server, "/options", {"sd_model_checkpoint": "tiny-sd1"}).status_code == 200
    server.root, server.images = data_dir, str(images)
    yield server
    for name in ("foxemb.pt", "foxemb.pt.optim", "stopme.pt", "stopme.pt.optim"):
        if (data_dir / "embeddings" / name).exists():
            (data_dir / "embeddings" / name).unlink()
    for folder in (data_dir / "textual_inversion", data_dir / "train_states"):
        shutil.rmtree(folder, ignore_errors=True)
    for path in (data_dir / "models" / "Lora").glob("foxlora*"):
        path.unlink()
    post(server, "/refresh-embeddings")


def post(server, path, body=None, timeout=120):
    return requests.post(server.url + "/sdapi/v1" + path, json=body, timeout=timeout)


def train(server, name, **fields):
    return post(server, "/train/embedding", {**TRAIN_FIELDS, "embedding_name": name, "data_root": server.images, **fields})


def in_thread(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", fn()))
    thread.start()
    return thread, result


def test_create_then_train_embedding_with_progress(train_server):
    r = post(train_server, "/create/embedding", {"name": "foxemb", "num_vectors_per_token": 2, "overwrite_old": False,
                                                  "init_text": "fox"})
    assert r.status_code == 200
    path = os.path.join(str(train_server.root), "embeddings", "foxemb.pt")
    assert r.json() == {"info": f"create embedding filename: {path}"}
    listed = requests.get(train_server.url + "/sdapi/v1/embeddings", timeout=30).json()["loaded"]
    assert listed["foxemb"]["step"] == 0 and listed["foxemb"]["vectors"] == 2
    again = post(train_server, "/create/embedding", {"name": "foxemb", "num_vectors_per_token": 2, "overwrite_old": False})
    assert again.status_code == 422 and "already exists" in again.json()["detail"]

    thread, result = in_thread(lambda: train(train_server, "foxemb", steps=40))
    seen = []
    while thread.is_alive():
        p = requests.get(train_server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=30).json()
        if p["state"]["job"] == "train-embedding":
            seen.append((p["progress"], p["state"]["job_no"], p["textinfo"]))
        time.sleep(0.05)
    thread.join()
    r = result["r"]
    assert r.status_code == 200 and r.json()["info"] == f"train embedding complete: filename: {path} error: None"
    assert seen and any("Step:" in (text or "") and "Loss:" in (text or "") for _, _, text in seen)
    steps = [job_no for _, job_no, _ in seen]
    assert steps == sorted(steps) and max(steps) > 0
    listed = requests.get(train_server.url + "/sdapi/v1/embeddings", timeout=30).json()["loaded"]
    assert listed["foxemb"]["step"] == 40


def test_interrupt_then_generation_and_queue(train_server):
    assert post(train_server, "/create/embedding", {"name": "stopme", "num_vectors_per_token": 1,
                                                     "overwrite_old": True}).status_code == 200
    thread, result = in_thread(lambda: train(train_server, "stopme", steps=100000, learn_rate=0.01))
    deadline = time.time() + 60
    while time.time() < deadline:
        p = requests.get(train_server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=30).json()
        if p["state"]["job"] == "train-embedding" and p["state"]["job_no"] >= 2:
            break
        time.sleep(0.05)
    # a generation asked for during training waits on the queue, then runs
    gen_thread, gen = in_thread(lambda: post(train_server, "/txt2img", {"prompt": "stopme", "steps": 2, "width": 64,
                                                                          "height": 64}))
    time.sleep(0.3)
    assert gen_thread.is_alive()
    assert post(train_server, "/interrupt").status_code == 200
    thread.join(60)
    assert result["r"].status_code == 200 and "error: None" in result["r"].json()["info"]
    gen_thread.join(60)
    assert gen["r"].status_code == 200 and len(gen["r"].json()["images"]) == 1
    step = requests.get(train_server.url + "/sdapi/v1/embeddings", timeout=30).json()["loaded"]["stopme"]["step"]
    assert 2 <= step < 100000


@pytest.mark.parametrize("fields, where", [
    ({"batch_size": 0}, "batch_size"), ({"learn_rate": "fast"}, "learn_rate"),
    ({"template_filename": "nope.txt"}, "template_filename"), ({"embedding_name": "missing"}, "embedding_name"),
    ({"data_root": "/does/not/exist"}, "data_root"), ({"bogus": 1}, "bogus"),
])
def test_bad_training_input_is_422_naming_the_field(train_server, fields, where):
    r = train(train_server, "foxemb", **fields)
    assert r.status_code == 422 and where in r.text


def test_train_lora_with_kohya_names(train_server):
    body = {"train_data_dir": os.path.dirname(train_server.images), "output_name": "foxlora", "network_dim": 4,
            "network_alpha": 4, "max_train_steps": 8, "learning_rate": 1e-3, "unet_lr": 1e-3, "text_encoder_lr": 1e-4,
            "resolution": "64", "enable_bucket": True, "min_bucket_reso": 32, "max_bucket_reso": 128,
            "bucket_reso_steps": 32, "train_batch_size": 2, "lr_scheduler": "constant_with_warmup",
            "lr_warmup_steps": 2, "optimizer_type": "AdamW", "save_every_n_steps": 4, "seed": 3,
            "network_train_unet_only": False, "network_train_text_encoder_only": False, "prior_loss_weight": 1.0}
    r = post(train_server, "/train/lora", body)
    assert r.status_code == 200, r.text
    path = os.path.join(str(train_server.root), "models", "Lora", "foxlora.safetensors")
    assert r.json() == {"info": f"Training finished at 8 steps.\nLoRA saved to {path}", "filename": path}
    assert os.path.exists(path.replace(".safetensors", "-step00000004.safetensors"))
    listing = requests.get(train_server.url + "/sdapi/v1/loras", timeout=30)  # no refresh-loras call before
    assert {"name": "foxlora", "path": path} in [{"name": i["name"], "path": i["path"]} for i in listing.json()]
    bad = post(train_server, "/train/lora", {**body, "optimizer_type": "Lion"})
    assert bad.status_code == 422 and "optimizer_type" in bad.json()["detail"]


def test_create_and_train_hypernetwork_with_a1111_fields(train_server):
    folder = os.path.join(str(train_server.root), "models", "hypernetworks")
    path = os.path.join(folder, "foxhn.pt")
    body = {"name": "foxhn", "enable_sizes": ["32", "16"], "overwrite_old": True, "layer_structure": "1, 2, 1",
            "activation_func": "relu", "weight_init": "XavierNormal", "add_layer_norm": False, "use_dropout": False,
            "dropout_structure": "0, 0, 0"}
    try:
        r = post(train_server, "/create/hypernetwork", body)
        assert r.status_code == 200 and r.json() == {"info": f"create hypernetwork filename: {path}"}
        listing = requests.get(train_server.url + "/sdapi/v1/hypernetworks", timeout=30).json()
        assert {"name": "foxhn", "path": path} in listing
        again = post(train_server, "/create/hypernetwork", {**body, "overwrite_old": False})
        assert again.status_code == 422 and "already exists" in again.json()["detail"]
        bad = post(train_server, "/create/hypernetwork", {**body, "layer_structure": "1, 2"})
        assert bad.status_code == 422 and "layer_structure" in bad.json()["detail"]
        fields = {k: v for k, v in TRAIN_FIELDS.items() if k not in ("save_image_with_stored_embedding", "save_embedding_every")}
        fields.update(hypernetwork_name="foxhn", data_root=train_server.images, save_hypernetwork_every=0,
                      learn_rate="0.001", steps=6, template_filename="hypernetwork.txt")
        assert len(fields) == 29
        r = post(train_server, "/train/hypernetwork", fields)
        assert r.status_code == 200, r.text
        assert r.json()["info"] == f"train hypernetwork complete: filename: {path} error: None"
        assert "finished at 6 steps" in r.json()["message"]
        assert torch_step(path) == 6
        missing = post(train_server, "/train/hypernetwork", {**fields, "hypernetwork_name": "nohn"})
        assert missing.status_code == 422 and "hypernetwork_name" in missing.json()["detail"]
        unknown = post(train_server, "/train/hypernetwork", {**fields, "save_embedding_every": 1})
        assert unknown.status_code == 422 and "save_embedding_every" in unknown.text
    finally:
        for name in ("foxhn.pt", "foxhn.pt.optim"):
            if os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))


def torch_step(path):
    import torch
    return torch.load(path, weights_only=True)["step"]
