"""Each LyCORIS type through a real file, the name table and the patcher, against its formula
re-written here from networks.md §3 (LoCon/Tucker, LoHa, LoKr, IA3, full, norm, GLoRA, OFT, BOFT, DoRA)."""
import pytest
import torch
from safetensors.torch import save_file

from modules import sd_models
from modules.networks import lora

LINEAR = "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"   # Linear 64 -> 16
CONV = "down_blocks.0.resnets.0.conv1"                                 # Conv2d 16 -> 16, 3x3
NORM = "down_blocks.0.resnets.0.norm1"                                 # GroupNorm(16)
g = torch.Generator().manual_seed(123)


def rnd(*shape, scale=0.1):
    return torch.randn(*shape, generator=g) * scale


@pytest.fixture
def sd1(webui_session):
    shared = webui_session
    info = sd_models.find_checkpoint("tiny-sd1")
    model = shared.job_queue.run(lambda: shared.model_holder.switch_to(info))
    return shared, model


def module_of(model, path):
    return dict(model.unet.named_modules())[path]


def apply(shared, data_dir, path, parts, multiplier, name):
    kohya = "lora_unet_" + path.replace(".", "_")
    folder = data_dir / "models" / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"{kohya}.{k}": v.contiguous() for k, v in parts.items()}, str(folder / f"{name}.safetensors"))
    lora.list_available_networks()
    report = shared.job_queue.run(lambda: lora.load_networks([name], [multiplier]))
    assert not report.unmatched and not report.errors and not report.failed_to_load, report
    return report


def check(shared, module, expected_w, expected_b=None, tol=1e-6):
    w0 = module.network_backup[0]
    error = (module.weight.detach().float() - expected_w).abs().max().item()
    assert error <= tol * max(1.0, w0.abs().max().item()), error
    if expected_b is not None:
        assert (module.bias.detach().float() - expected_b).abs().max().item() <= tol
    before_w = w0.clone()
    shared.job_queue.run(lora.restore_all)
    assert torch.equal(module.weight.detach(), before_w)


def test_locon_tucker(sd1, data_dir):
    shared, model = sd1
    conv = module_of(model, CONV)
    w0 = conv.weight.detach().clone()
    r = 3
    up, mid, down = rnd(16, r, 1, 1), rnd(r, r, 3, 3), rnd(r, 16, 1, 1)
    apply(shared, data_dir, CONV, {"lora_up.weight": up, "lora_mid.weight": mid, "lora_down.weight": down,
                                   "alpha": torch.tensor(1.5)}, 0.8, "tucker")
    d = torch.zeros_like(w0)
    for k in range(3):
        for l in range(3):
            d[:, :, k, l] = up[:, :, 0, 0] @ mid[:, :, k, l] @ down[:, :, 0, 0]
    check(shared, conv, w0 + 0.8 * (1.5 / r) * d)


def test_loha(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    r = 4
    w1a, w1b, w2a, w2b = rnd(16, r), rnd(r, 64), rnd(16, r), rnd(r, 64)
    apply(shared, data_dir, LINEAR, {"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b,
                                     "alpha": torch.tensor(2.0)}, 0.6, "loha")
    check(shared, lin, w0 + 0.6 * (2.0 / r) * ((w1a @ w1b) * (w2a @ w2b)))


def test_loha_on_conv(sd1, data_dir):
    shared, model = sd1
    conv = module_of(model, CONV)
    w0 = conv.weight.detach().clone()
    w1a, w1b, w2a, w2b = rnd(16, 2), rnd(2, 16 * 9), rnd(16, 2), rnd(2, 16 * 9)
    apply(shared, data_dir, CONV, {"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b}, 1.0, "lohaconv")
    check(shared, conv, w0 + ((w1a @ w1b) * (w2a @ w2b)).reshape(w0.shape))


def test_lokr_factored_and_full(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    w1, w2a, w2b = rnd(4, 8), rnd(4, 2), rnd(2, 8)  # (4·4) x (8·8) = 16 x 64
    apply(shared, data_dir, LINEAR, {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b,
                                     "alpha": torch.tensor(1.0)}, 0.5, "lokr")
    check(shared, lin, w0 + 0.5 * (1.0 / 2) * torch.kron(w1, w2a @ w2b))
    w2 = rnd(4, 8)
    apply(shared, data_dir, LINEAR, {"lokr_w1": w1, "lokr_w2": w2, "alpha": torch.tensor(7.0)}, 0.5, "lokrfull")
    check(shared, lin, w0 + 0.5 * torch.kron(w1, w2))  # full-matrix LoKr: s = 1


@pytest.mark.parametrize("on_input", [False, True])
def test_ia3(sd1, data_dir, on_input):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    vector = rnd(64 if on_input else 16, scale=1.0)
    apply(shared, data_dir, LINEAR, {"weight": vector, "on_input": torch.tensor(on_input)}, 0.7, f"ia3{on_input}")
    factor = vector[None, :] if on_input else vector[:, None]
    check(shared, lin, w0 * (1 + 0.7 * factor))


def test_full_diff_with_bias(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    diff, diff_b = rnd(16, 64), rnd(16)
    apply(shared, data_dir, LINEAR, {"diff": diff, "diff_b": diff_b}, 0.4, "full")
    check(shared, lin, w0 + 0.4 * diff, b0 + 0.4 * diff_b)


def test_norm(sd1, data_dir):
    shared, model = sd1
    norm = module_of(model, NORM)
    w0, b0 = norm.weight.detach().clone(), norm.bias.detach().clone()
    wn, bn = rnd(16), rnd(16)
    apply(shared, data_dir, NORM, {"w_norm": wn, "b_norm": bn}, 0.9, "norm")
    check(shared, norm, w0 + 0.9 * wn, b0 + 0.9 * bn)


def test_glora_both_layouts(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    r = 2
    b2, b1, a2, a1 = rnd(16, r), rnd(r, 64), rnd(64, r), rnd(r, 64)  # mid-2023 layout
    apply(shared, data_dir, LINEAR, {"b2.weight": b2, "b1.weight": b1, "a2.weight": a2, "a1.weight": a1,
                                     "alpha": torch.tensor(1.0)}, 0.5, "glora")
    check(shared, lin, w0 + 0.5 * (b2 @ b1 + w0 @ a2 @ a1))
    a1, a2, b1, b2 = rnd(64, r), rnd(r, 64), rnd(16, r), rnd(r, 64)  # later layout, chosen by shape
    apply(shared, data_dir, LINEAR, {"b2.weight": b2, "b1.weight": b1, "a2.weight": a2, "a1.weight": a1,
                                     "alpha": torch.tensor(1.0)}, 0.5, "glora2")
    check(shared, lin, w0 + 0.5 * (b1 @ b2 + w0 @ a1 @ a2))


def _cayley_reference(blocks, alpha, out):
    q = blocks - blocks.transpose(1, 2)
    norm = torch.sqrt((q ** 2).sum())
    c = alpha * out
    q = q * (min(norm.item(), c) + 1e-8) / (norm + 1e-8)
    eye = torch.eye(q.shape[-1]).expand_as(q)
    # R (I - Q) = I + Q
    return torch.linalg.solve((eye - q).transpose(1, 2), (eye + q).transpose(1, 2)).transpose(1, 2)


def test_oft(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    k, n = 4, 4  # K·n = 16 = out
    blocks = rnd(k, n, n, scale=0.3)
    apply(shared, data_dir, LINEAR, {"oft_blocks": blocks, "alpha": torch.tensor(0.01)}, 1.0, "oft")
    r = _cayley_reference(blocks, 0.01, 16)
    for block in r:
        assert (block.T @ block - torch.eye(n)).abs().max() <= 1e-5  # orthogonal
    rotated = torch.cat([r[i].T @ w0[i * n:(i + 1) * n] for i in range(k)])
    check(shared, lin, rotated, tol=1e-5)
    apply(shared, data_dir, LINEAR, {"oft_blocks": blocks, "alpha": torch.tensor(0.01)}, 0.5, "oft")
    check(shared, lin, w0 + 0.5 * (rotated - w0), tol=1e-5)


def test_boft_is_an_orthogonal_mix_of_rows(sd1, data_dir):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    blocks = rnd(2, 4, 4, 4, scale=0.3)  # M = 2 levels, K = 4 blocks of n = 4
    apply(shared, data_dir, LINEAR, {"oft_blocks": blocks, "alpha": torch.tensor(0.0)}, 1.0, "boft")
    rotated = lin.weight.detach().float()
    assert not torch.allclose(rotated, w0)
    # an orthogonal map of the rows keeps every column's length
    assert (rotated.norm(dim=0) - w0.norm(dim=0)).abs().max() <= 1e-5
    shared.job_queue.run(lora.restore_all)
    assert torch.equal(lin.weight.detach(), w0)


@pytest.mark.parametrize("axis", ["input", "output"])
def test_dora(sd1, data_dir, axis):
    shared, model = sd1
    lin = module_of(model, LINEAR)
    w0 = lin.weight.detach().clone()
    r = 4
    up, down = rnd(16, r), rnd(r, 64)
    dora_scale = rnd(1, 64, scale=1.0).abs() + 0.5 if axis == "input" else rnd(16, 1, scale=1.0).abs() + 0.5
    apply(shared, data_dir, LINEAR, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0),
                                     "dora_scale": dora_scale}, 0.7, f"dora{axis}")
    v = w0 + (2.0 / r) * (up @ down)
    norm = v.norm(dim=0, keepdim=True) if axis == "input" else v.norm(dim=1, keepdim=True)
    check(shared, lin, w0 + 0.7 * (dora_scale * v / norm - w0))


def test_group_no_type_accepts_is_a_load_error(sd1, data_dir):
    shared, model = sd1
    folder = data_dir / "models" / "Lora"
    save_file({"lora_unet_conv_in.alpha": torch.tensor(1.0)}, str(folder / "onlyalpha.safetensors"))
    lora.list_available_networks()
    report = shared.job_queue.run(lambda: lora.load_networks(["onlyalpha"]))
    assert report.failed_to_load and "lora_unet_conv_in" in report.failed_to_load[0]
