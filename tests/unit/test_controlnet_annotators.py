"""Model-based ControlNet preprocessors on controlnet_aux's networks with random weights saved where a
user puts the real files: map sizes and types, maps equal to the network's output restated here
(pad-resize, forward, transform, crop), the weight-file unwrapping, the cache, and clear errors."""
import os
import re

import cv2
import numpy as np
import pytest
import torch

from modules import shared
from modules.controlnet import annotator_nets, preprocessors


def _random_net(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = annotator_nets.BUILDERS[kind]()
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():  # HED's input offset starts at zero: make it matter
                p.normal_(0, 20.0)
    return net.eval()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(shared.cmd_opts, "controlnet_annotator_models_path", str(tmp_path))
    return tmp_path


def _save(folder, sub, file, state) -> str:
    path = folder / sub / file
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return str(path)


def _image(h=70, w=90, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3)).astype(np.uint8)
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_NEAREST)  # blocks: edges to find


def _pad_resized(image, res):
    """§4.2 restated: short side to res (cubic up, area down), edge-pad to multiples of 64."""
    h, w = image.shape[:2]
    k = res / min(h, w)
    th, tw = int(np.round(h * k)), int(np.round(w * k))
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    return np.pad(small, ((0, -th % 64), (0, -tw % 64), (0, 0)), mode="edge"), (th, tw)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x)).float().permute(2, 0, 1)[None]


def _run(name, image, res):
    return preprocessors.run(preprocessors.find(name), image, res)


def test_hed_maps_equal_the_network_output(folder):
    net = _random_net("hed")
    _save(folder, "hed", "ControlNetHED.pth", net.state_dict())
    image = _image()
    padded, (th, tw) = _pad_resized(image, 64)
    with torch.no_grad():
        sides = [s[0, 0].numpy() for s in net(_nchw(padded))]
    sides = [cv2.resize(s, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_LINEAR) for s in sides]
    edge = 1 / (1 + np.exp(-np.mean(np.stack(sides, 2), 2).astype(np.float64)))
    soft = (edge * 255).clip(0, 255).astype(np.uint8)[:th, :tw]
    safe = (np.floor(edge.astype(np.float32) * 3) / 2 * 255).clip(0, 255).astype(np.uint8)[:th, :tw]

    out = _run("softedge_hed", image, 64)
    assert out.shape == (64, 82, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.repeat(soft[:, :, None], 3, 2))
    assert len(np.unique(soft)) > 10  # a real soft map, not a constant

    out_safe = _run("hed_safe", image, 64)
    assert np.array_equal(out_safe[:, :, 0], safe) and set(np.unique(safe)) <= {0, 127, 255}

    blurred = cv2.GaussianBlur(soft.astype(np.float32), (0, 0), 3.0)
    thin = np.zeros_like(blurred)
    for f in ([[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
              [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]]):
        dilated = cv2.dilate(blurred, np.array(f, np.uint8))
        thin[dilated == blurred] = blurred[dilated == blurred]
    lines = cv2.GaussianBlur(np.where(thin > 127, 255, 0).astype(np.uint8), (0, 0), 3.0)
    scribbled = _run("scribble_hed", image, 64)[:, :, 0]
    assert np.array_equal(scribbled, np.where(lines > 4, 255, 0)) and 0 < (scribbled == 255).mean() < 1


def test_lineart_maps_are_inverted_network_output(folder):
    fine, coarse = _random_net("lineart", 0), _random_net("lineart", 1)
    _save(folder, "lineart", "sk_model.pth", fine.state_dict())
    _save(folder, "lineart", "sk_model2.pth", coarse.state_dict())
    image = _image(64, 100)
    padded, (th, tw) = _pad_resized(image, 64)
    for name, net in (("lineart_realistic", fine), ("lineart_coarse", coarse)):
        with torch.no_grad():
            line = net(_nchw(padded) / 255.0)[0, 0].numpy()
        expected = 255 - (line * 255).clip(0, 255).astype(np.uint8)[:th, :tw]
        out = _run(name, image, 64)
        assert out.shape == (64, 100, 3) and out.dtype == np.uint8
        assert np.array_equal(out[:, :, 1], expected) and len(np.unique(expected)) > 10
    assert not np.array_equal(_run("lineart", image, 64), _run("lineart_coarse", image, 64))


def test_lineart_anime_works_at_multiples_of_256_from_a_dataparallel_file(folder):
    net = _random_net("lineart_anime")
    _save(folder, "lineart_anime", "netG.pth", {f"module.{k}": v for k, v in net.state_dict().items()})
    image = _image(64, 80)
    padded, (th, tw) = _pad_resized(image, 64)  # 64 x 128 -> fed at 256 x 256
    feed = cv2.resize(padded, (256, 256), interpolation=cv2.INTER_CUBIC)
    with torch.no_grad():
        line = net(_nchw(feed) / 127.5 - 1.0)[0, 0].numpy() * 127.5 + 127.5
    line = cv2.resize(line, (128, 64), interpolation=cv2.INTER_CUBIC)
    expected = 255 - line.clip(0, 255).astype(np.uint8)[:th, :tw]
    out = _run("lineart_anime", image, 64)
    assert out.shape == (64, 80, 3) and np.array_equal(out[:, :, 2], expected) and len(np.unique(expected)) > 10


def test_pidinet_family_from_a_training_checkpoint(folder):
    net = _random_net("pidinet")
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    _save(folder, "pidinet", "table5_pidinet.pth", {"epoch": 14, "state_dict": state})
    image = _image(64, 64)
    with torch.no_grad():
        edge = net(_nchw(image[:, :, ::-1]) / 255.0)[-1][0, 0].numpy()
    soft = (edge * 255).clip(0, 255).astype(np.uint8)
    out = _run("softedge_pidinet", image, 64)
    assert out.shape == (64, 64, 3) and np.array_equal(out[:, :, 0], soft)
    safe = (np.floor(edge * 3) / 2 * 255).clip(0, 255).astype(np.uint8)
    assert np.array_equal(_run("softedge_pidisafe", image, 64)[:, :, 0], safe)
    assert np.array_equal(_run("t2ia_sketch_pidi", image, 64)[:, :, 0], np.where(edge > 0.5, 255, 0))
    scribbled = _run("scribble_pidinet", image, 64)
    assert set(np.unique(scribbled)) == {0, 255} and len(np.unique(soft)) > 10 and 0 < (edge > 0.5).mean() < 1


def test_nets_are_cached_by_file_and_reloaded_when_it_changes(folder):
    path = _save(folder, "hed", "ControlNetHED.pth", _random_net("hed").state_dict())
    first = annotator_nets.load("hed", path)
    assert annotator_nets.load("hed", path) is first
    _save(folder, "hed", "ControlNetHED.pth", _random_net("hed", 3).state_dict())
    os.utime(path, (1, 1))
    assert annotator_nets.load("hed", path) is not first


def test_missing_or_unfitting_weights_give_clear_errors(folder):
    with pytest.raises(preprocessors.PreprocessorError, match=r"ControlNetHED\.pth in .*hed; downloads are disabled"):
        _run("softedge_hed", _image(), 64)
    state = _random_net("lineart").state_dict()
    state["extra.weight"] = state.pop("model0.1.weight")
    path = _save(folder, "lineart", "sk_model.pth", state)
    with pytest.raises(preprocessors.PreprocessorError, match=re.escape(path) + r" do not fit the lineart network "
                       r"\(missing keys: model0\.1\.weight; unexpected keys: extra\.weight\)"):
        _run("lineart_realistic", _image(), 64)
    (folder / "lineart" / "sk_model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(preprocessors.PreprocessorError, match=r"Cannot read preprocessor weights .*sk_model\.pth"):
        _run("lineart_realistic", _image(), 64)



def test_mlsd_draws_the_segments_of_controlnet_aux_line_decoding(folder):
    torch.manual_seed(0)
    net = annotator_nets.BUILDERS["mlsd"]()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5), module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1), module.running_var.uniform_(0.5, 1.5)
        head = net.block23.conv3  # outputs 8..11 are the displacements to the segment ends: make them long
        head.weight[8:12] *= 40.0
        head.bias[8:12] *= 40.0
    net.eval()
    _save(folder, "mlsd", "mlsd_large_512_fp32.pth", net.state_dict())
    image = _image(64, 96)
    pre = preprocessors.find("mlsd")
    assert [s.name for s in pre.sliders[1:]] == ["MLSD Value Threshold", "MLSD Distance Threshold"]
    from controlnet_aux.mlsd.utils import pred_lines  # the package's own decoding, as a reference
    padded, (th, tw) = _pad_resized(image, 64)  # 64 x 128, cropped back to 64 x 96
    drawn = []
    for thresholds in ((0.1, 0.1), (0.1, 6.0), (0.6, 0.1)):
        try:
            with torch.no_grad():
                lines = pred_lines(padded, net, list(padded.shape[:2]), *thresholds)
        except IndexError:  # the package's decoding fails when nothing passes; the extension draws nothing
            lines = []
        expected = np.zeros(padded.shape[:2], np.uint8)
        for line in lines:
            x0, y0, x1, y1 = (int(v) for v in line)
            cv2.line(expected, (x0, y0), (x1, y1), 255, 1)
        expected = expected[:th, :tw]
        out = preprocessors.run(pre, image, 64, *thresholds)
        assert out.shape == (64, 96, 3) and np.array_equal(out[:, :, 0], expected)
        drawn.append((expected == 255).mean())
    assert 0 < drawn[1] < drawn[0] < 1 and drawn[2] == 0  # longer only: fewer; scores here < 0.6
    assert np.array_equal(preprocessors.run(pre, image, 64, -1, -1), preprocessors.run(pre, image, 64, 0.1, 0.1))


def test_detect_route_runs_a_network_on_the_job_queue_and_refuses_bad_weights(folder, monkeypatch):
    import base64
    import io

    from fastapi import HTTPException
    from PIL import Image

    from modules.api import controlnet_routes
    net = _random_net("hed")
    _save(folder, "hed", "ControlNetHED.pth", net.state_dict())
    image = _image(64, 64)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    jobs = []
    real_run = shared.job_queue.run
    monkeypatch.setattr(shared.job_queue, "run", lambda fn, name="job", task_id=None: (jobs.append(name),
                                                                                       real_run(fn, name))[1])
    request = controlnet_routes.DetectRequest(controlnet_module="softedge_hed", controlnet_input_images=[data],
                                              controlnet_processor_res=64)
    answer = controlnet_routes.run_detect(request)
    assert jobs == ["controlnet_detect"]
    got = np.array(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))))
    assert np.array_equal(got, _run("softedge_hed", image, 64))
    torch.save({"block1.wrong": torch.zeros(1)}, folder / "hed" / "ControlNetHED.pth")
    os.utime(folder / "hed" / "ControlNetHED.pth", (2, 2))  # a new modification time: not the cached net
    with pytest.raises(HTTPException) as caught:
        controlnet_routes.run_detect(request)
    assert caught.value.status_code == 422 and "do not fit the hed network" in caught.value.detail
