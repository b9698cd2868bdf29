"""Full-size GFPGAN / CodeFormer through spandrel and the whole face pipeline (random weights).
Slow (~15-30 s per restorer on 2 CPU cores, ~500 MB of temporary files): runs only with
RUN_SLOW_TESTS=1. The fast tests in test_face_restoration.py cover the geometry with fakes."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from modules import cmd_args, face_restoration, shared
from modules.face_restoration import files, models, pipeline

pytestmark = pytest.mark.skipif(not os.environ.get("RUN_SLOW_TESTS"), reason="slow: set RUN_SLOW_TESTS=1")


@pytest.mark.parametrize("name", ["GFPGAN", "CodeFormer"])
def test_full_size_restorer_runs_detect_restore_paste(name, tmp_path, monkeypatch):
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, models=str(tmp_path)))
    monkeypatch.setattr(shared, "cmd_opts", cmd_args.build_parser().parse_args([]))
    (tmp_path / "GFPGAN").mkdir()
    torch.save(RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu")).state_dict(),
               tmp_path / "GFPGAN" / files.DETECTION_FILE)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), tmp_path / "GFPGAN" / files.PARSING_FILE)
    if name == "GFPGAN":
        from spandrel.architectures.GFPGAN import GFPGAN
        torch.save(GFPGAN().state_dict(), tmp_path / "GFPGAN" / "GFPGANv1.4.pth")
    else:
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer
        (tmp_path / "Codeformer").mkdir()
        torch.save(CodeFormer().state_dict(), tmp_path / "Codeformer" / "codeformer-v0.1.0.pth")
    landmarks = (pipeline.FFHQ_TEMPLATE - 256) * 0.3 + np.array([100, 90], np.float32)
    monkeypatch.setattr(models, "detector_fn", lambda detector: (lambda bgr: [landmarks]))  # random R50 finds none
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (180, 200, 3), dtype=np.uint8))
    first = face_restoration.restore_faces(image, name, 0.5)
    assert first.size == image.size and first.mode == "RGB"
    assert not np.array_equal(np.asarray(first), np.asarray(image))
    assert np.array_equal(np.asarray(first)[:, :20], np.asarray(image)[:, :20])  # far from the face
    assert np.array_equal(np.asarray(face_restoration.restore_faces(image, name, 0.5)), np.asarray(first))
