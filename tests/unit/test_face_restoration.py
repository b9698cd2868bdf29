"""Face restoration: the detect → align → restore → paste pipeline with injected models, the
Extras face steps, local-only facexlib weights and the messages for missing files (extras.md §3)."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import cmd_args, face_restoration, shared
from modules.face_restoration import files, models, pipeline
from modules.postprocessing import face_steps
from modules.scripts_postprocessing import PostprocessedImage


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, models=str(tmp_path)))
    monkeypatch.setattr(shared, "cmd_opts", cmd_args.build_parser().parse_args([]))
    return tmp_path


def face_picture(size=(200, 160), centre=(100, 80), scale=0.25):
    """A grey picture with a drawn face-like pattern; returns it and the pattern's 5 landmarks."""
    image = Image.new("RGB", size, (120, 110, 100))
    landmarks = (pipeline.FFHQ_TEMPLATE - 256) * scale + np.array(centre, np.float32)
    draw = ImageDraw.Draw(image)
    draw.ellipse([centre[0] - 40, centre[1] - 50, centre[0] + 40, centre[1] + 50], fill=(220, 180, 150))
    for x, y in landmarks:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(40, 30, 30))
    return image, landmarks


def test_identity_restore_with_full_mask_keeps_the_image():
    image, landmarks = face_picture()
    out = face_restoration.restore_with(image, lambda bgr: [landmarks], lambda crop: crop,
                                        lambda crop: np.ones(crop.shape[:2], np.float32))
    assert out.size == image.size
    assert np.abs(np.asarray(out, np.float32) - np.asarray(image, np.float32)).mean() < 1


def test_no_face_is_byte_identical_and_two_faces_paste_twice():
    image, _ = face_picture()
    assert face_restoration.restore_with(image, lambda bgr: [], None, None) is image
    tiny_eyes = np.array([[10, 10], [12, 10], [11, 12], [10, 14], [12, 14]], np.float32)  # eyes < 5 px apart
    assert face_restoration.restore_with(image, lambda bgr: [tiny_eyes], None, None) is image
    first = (pipeline.FFHQ_TEMPLATE - 256) * 0.1 + np.array([40, 40], np.float32)
    second = (pipeline.FFHQ_TEMPLATE - 256) * 0.1 + np.array([150, 110], np.float32)
    red = lambda crop: np.full_like(crop, (0, 0, 255))  # BGR red  # noqa: E731
    out = np.asarray(face_restoration.restore_with(image, lambda bgr: [first, second], red,
                                                   lambda crop: pipeline.border_mask()))
    assert out.shape == (160, 200, 3)
    for x, y in ((40, 40), (150, 110)):
        assert tuple(out[y, x]) == (255, 0, 0)
    original = np.asarray(image)
    assert np.array_equal(out[75:85, 95:105], original[75:85, 95:105])  # between the faces: untouched
    assert np.array_equal(out[:, 190:], original[:, 190:])


def test_soft_mask_keeps_face_classes_only():
    parsing = np.zeros((512, 512), np.int64)
    parsing[128:384, 128:384] = 1   # skin
    parsing[:, 480:] = 17           # hair
    mask = pipeline.soft_mask(parsing)
    assert mask.shape == (512, 512) and mask[256, 256] == pytest.approx(1, abs=1e-3)
    assert mask[256, 500] < 0.01 and mask[0, 0] == 0 and 0 <= mask.min() and mask.max() <= 1


def test_face_steps_visibility(monkeypatch):
    image = Image.fromarray(np.full((32, 32, 4), 200, np.uint8), "RGBA")
    calls = []

    def fake_restore(img, name, weight=0.5):
        calls.append((name, weight))
        return Image.new("RGB", img.size, (0, 0, 0))
    monkeypatch.setattr(face_restoration, "restore_faces", fake_restore)
    pp = PostprocessedImage(image)
    face_steps.ScriptPostprocessingGfpGan().process(pp, enable=True, gfpgan_visibility=0)
    face_steps.ScriptPostprocessingCodeFormer().process(pp, enable=False, codeformer_visibility=1)
    assert pp.image is image and pp.info == {} and calls == []  # no model load, no keys
    face_steps.ScriptPostprocessingCodeFormer().process(pp, enable=True, codeformer_visibility=0.5,
                                                        codeformer_weight=0.25)
    assert calls == [("CodeFormer", 0.25)]
    assert pp.info == {"CodeFormer visibility": 0.5, "CodeFormer weight": 0.25}
    assert pp.image.mode == "RGBA" and pp.image.getpixel((3, 3)) == (100, 100, 100, 200)


def test_missing_weights_name_the_files_and_folder(models_dir):
    with pytest.raises(face_restoration.FaceRestorationUnavailable,
                       match=r"put GFPGANv1.4.pth into .*GFPGAN .*detection_Resnet50_Final.pth, parsing_parsenet.pth"):
        face_restoration.check_available("GFPGAN")
    (models_dir / "Codeformer").mkdir()
    (models_dir / "Codeformer" / "codeformer-v0.1.0.pth").write_bytes(b"x")
    with pytest.raises(face_restoration.FaceRestorationUnavailable,
                       match="detection/parsing weights detection_Resnet50_Final.pth, parsing_parsenet.pth in"):
        face_restoration.check_available("CodeFormer")
    assert "not found" in face_restoration.generation_problem("NoSuchRestorer")


def test_facexlib_weights_load_from_the_local_folder_only(models_dir, monkeypatch):
    """Random RetinaFace-R50 and ParseNet weights in models/GFPGAN load strictly through our path;
    facexlib's downloading helper is never reached."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    import facexlib.detection
    import facexlib.parsing

    def no_download(*args, **kwargs):
        raise AssertionError("facexlib tried to download")
    monkeypatch.setattr(facexlib.detection, "load_file_from_url", no_download)
    monkeypatch.setattr(facexlib.parsing, "load_file_from_url", no_download)
    folder = models_dir / "GFPGAN"
    folder.mkdir()
    torch.manual_seed(0)
    detector_state = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu")).state_dict()
    torch.save({f"module.{k}": v for k, v in detector_state.items()}, folder / files.DETECTION_FILE)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / files.PARSING_FILE)
    detector, parser = models.facexlib_models(torch.device("cpu"))
    assert isinstance(parser, ParseNet)  # its 512 px forward takes half a minute on one CPU core: not run here
    monkeypatch.setattr(models, "DETECT_SHORT_SIDE", 64)  # the real 640 px costs seconds on CPU
    found = models.detector_fn(detector)(np.zeros((100, 80, 3), np.uint8))
    assert isinstance(found, list)
    assert models.facexlib_models(torch.device("cpu"))[0] is detector  # built once


def test_restorer_call_conventions():
    """GFPGAN gets return_rgb=False and seeded noise (repeatable); CodeFormer gets the weight."""
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x, **kwargs):
            seen.append(kwargs)
            return (x * 0 + torch.randn(()).clamp(-1, 1), None)
    crop = np.full((512, 512, 3), 90, np.uint8)
    gfpgan = models.restore_fn("GFPGAN", Net(), torch.device("cpu"), 0.5)
    assert np.array_equal(gfpgan(crop), gfpgan(crop))
    models.restore_fn("CodeFormer", Net(), torch.device("cpu"), 0.7)(crop)
    assert seen == [{"return_rgb": False}, {"return_rgb": False}, {"weight": 0.7, "adain": True}]


def test_generation_restores_each_image_before_saving(webui_session, monkeypatch):
    from modules import processing, sd_models
    shared_ = webui_session
    calls = []

    def fake(image, name, weight=0.5):
        calls.append((name, weight, image.size))
        return Image.new("RGB", image.size, (1, 2, 3))
    monkeypatch.setattr(face_restoration, "restore_faces", fake)
    monkeypatch.setattr(face_restoration, "generation_problem", lambda name: None)
    info = sd_models.find_checkpoint("tiny-sd1")
    shared_.job_queue.run(lambda: shared_.model_holder.switch_to(info))
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a face", steps=2, width=64, height=64, seed=1,
                                                    sampler_name="Euler", batch_size=2, restore_faces=True,
                                                    do_not_save_samples=True, do_not_save_grid=True,
                                                    override_settings={"face_restoration_model": "GFPGAN",
                                                                       "code_former_weight": 0.3})
    processed = shared_.job_queue.run(lambda: processing.process_images(p))
    assert calls == [("GFPGAN", 0.3, (64, 64))] * 2
    assert processed.images[-1].getpixel((0, 0)) == (1, 2, 3)
    assert "Seed: 2, Face restoration: GFPGAN, Size: 64x64" in processed.infotexts[-1]
    assert '"face_restoration_model": "GFPGAN"' in processed.js()
