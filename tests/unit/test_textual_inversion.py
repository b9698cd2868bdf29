"""Tests for modules/textual_inversion (prompt-syntax.md §10, generation.md §16, api.md §12)."""

import hashlib
import logging
import os
import time

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from modules import hashes
from modules.textual_inversion import image_embedding
from modules.textual_inversion import textual_inversion as ti
from modules.textual_inversion.textual_inversion import Embedding, EmbeddingDatabase

SD1 = {"default": 32}
SDXL = {"clip_l": 32, "clip_g": 48}


class NotAllowed:
    """A custom class: weights_only loading must refuse a pickle that needs it."""

    def __init__(self):
        self.payload = torch.ones(2, 32)


def rand(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def save_pt(path, vec, **extra):
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, **extra}, path)


def bump_mtime(path, seconds=5):
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "embeddings"
    root.mkdir()
    return root


def load(folder, widths=SD1, **kwargs):
    db = EmbeddingDatabase([str(folder)], **kwargs)
    db.load_textual_inversion_embeddings(widths)
    return db


# --- formats ---------------------------------------------------------------------------------

def test_pt_with_string_to_param_and_metadata(folder):
    vec = rand(3, 32)
    save_pt(folder / "inkwash.pt", torch.nn.Parameter(vec), name="ignored", step=500,
            sd_checkpoint="abcdef12", sd_checkpoint_name="v1-5")
    db = load(folder)
    emb = db.word_embeddings["inkwash"]  # trigger word = file stem, not the stored name
    assert (emb.vectors, emb.shape, emb.step) == (3, 32, 500)
    assert (emb.sd_checkpoint, emb.sd_checkpoint_name) == ("abcdef12", "v1-5")
    assert emb.vec.dtype == torch.float32 and torch.equal(emb.vec, vec)
    assert emb.filename == str(folder / "inkwash.pt")
    assert db.errors == {} and db.skipped_embeddings == {}


def test_concept_bin_safetensors_and_subfolders(folder):
    (folder / "sub" / "deeper").mkdir(parents=True)
    torch.save({"<cat-toy>": rand(32)}, folder / "sub" / "cat_toy.bin")  # 1-D: one vector
    safetensors.torch.save_file({"emb_params": rand(2, 32)}, str(folder / "sub" / "deeper" / "a1111.safetensors"))
    torch.save({"<two>": rand(4, 32).half()}, folder / "half.pt")
    db = load(folder)
    assert {n: e.vectors for n, e in db.word_embeddings.items()} == {"a1111": 2, "cat_toy": 1, "half": 4}
    assert db.word_embeddings["cat_toy"].vec.shape == (1, 32)
    assert db.word_embeddings["half"].vec.dtype == torch.float32
    assert db.word_embeddings["a1111"].step is None


def test_sdxl_files_fit_only_sdxl_widths(folder):
    safetensors.torch.save_file({"clip_l": rand(2, 32), "clip_g": rand(2, 48)}, str(folder / "xl.safetensors"))
    save_pt(folder / "sd1.pt", rand(1, 32))
    save_pt(folder / "sd2.pt", rand(1, 40))
    db = load(folder, SDXL)
    assert list(db.word_embeddings) == ["xl"] and sorted(db.skipped_embeddings) == ["sd1", "sd2"]
    xl = db.word_embeddings["xl"]
    assert xl.vectors == 2 and xl.shape == 32 + 48 and set(xl.vec) == {"clip_l", "clip_g"}
    assert xl.vec["clip_g"].shape == (2, 48)

    db.load_textual_inversion_embeddings(SD1)  # a different model: same files, other verdicts
    assert list(db.word_embeddings) == ["sd1"] and sorted(db.skipped_embeddings) == ["sd2", "xl"]
    db.load_textual_inversion_embeddings(None)  # no model: nothing can be checked, all usable
    assert sorted(db.word_embeddings) == ["sd1", "sd2", "xl"]


def test_previews_and_other_files_are_ignored(folder):
    save_pt(folder / "style.pt", rand(1, 32))
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "style.preview.png")
    (folder / "style.txt").write_text("notes")
    (folder / "style.pt.optim").write_bytes(b"x")
    db = load(folder)
    assert list(db.word_embeddings) == ["style"] and db.errors == {}


def test_plain_picture_is_not_an_embedding(folder):
    Image.new("RGB", (16, 16), (30, 120, 200)).save(folder / "holiday.png")
    db = load(folder)
    assert db.word_embeddings == {} and db.errors == {}


# --- images ------------------------------------------------------------------------------------

def test_lcg_stream_matches_the_plain_recurrence():
    expected, seed = [], 0
    for _ in range(9000):  # crosses two of the vectorised blocks
        seed = (1664525 * seed + 1013904223) % 2 ** 32
        expected.append((seed % 255) & 0x0F)
    assert image_embedding.lcg_nibbles(9000).tolist() == expected


@pytest.mark.parametrize("filename,text_chunk,pixels", [
    ("both.png", True, True),
    ("text_only.png", True, False),
    ("pixels_only.png", False, True),
    ("pixels.webp", False, True),
])
def test_image_round_trip(folder, filename, text_chunk, pixels):
    emb = Embedding(rand(2, 32), "Pretty Name")
    emb.step, emb.sd_checkpoint, emb.sd_checkpoint_name = 120, "0123abcd", "tiny"
    picture = Image.new("RGB", (40, 40), (0, 0, 0))  # black picture: separators must still be found
    image_embedding.write_embedding_image(str(folder / filename), ti.embedding_to_data(emb), picture,
                                          text_chunk=text_chunk, pixels=pixels)
    db = load(folder)
    assert db.errors == {}
    got = db.word_embeddings["Pretty Name"]  # the stored name, not the file stem
    assert torch.allclose(got.vec, emb.vec) and got.vectors == 2
    assert (got.step, got.sd_checkpoint, got.sd_checkpoint_name) == (120, "0123abcd", "tiny")


def test_pixel_data_survives_an_added_black_border():
    emb = Embedding(rand(1, 32), "framed")
    image = image_embedding.insert_data_into_pixels(Image.new("RGB", (24, 24), (250, 250, 250)),
                                                    ti.embedding_to_data(emb))
    framed = Image.new("RGB", (image.width + 10, image.height + 6))
    framed.paste(image, (5, 3))
    data = image_embedding.extract_data_from_pixels(framed)
    assert data["name"] == "framed" and torch.allclose(data["string_to_param"]["*"], emb.vec)


def test_corrupt_image_data_is_reported(folder):
    emb = Embedding(rand(1, 32), "broken")
    path = folder / "broken.png"
    image_embedding.write_embedding_image(str(path), ti.embedding_to_data(emb), text_chunk=False)
    pixels = np.array(Image.open(path))
    pixels[:, :1, :] ^= 0x05  # damage the low-nibble block (left of the first black column)
    Image.fromarray(pixels).save(path)
    db = load(folder)
    assert db.word_embeddings == {} and "broken" in db.errors


# --- errors ------------------------------------------------------------------------------------

def test_broken_files_are_reported_not_fatal(folder, caplog):
    save_pt(folder / "good.pt", rand(1, 32))
    (folder / "garbage.pt").write_bytes(b"this is not a torch file")
    (folder / "junk.pt").write_bytes(b"junk")  # the legacy unpickler fails with struct.error
    (folder / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    (folder / "empty.bin").write_bytes(b"")
    torch.save({"string_to_param": {"*": NotAllowed()}}, folder / "custom.pt")
    torch.save({"string_to_param": {"a": rand(1, 32), "b": rand(1, 32)}}, folder / "two_terms.pt")
    safetensors.torch.save_file({"w1": rand(2, 2), "w2": rand(2, 2)}, str(folder / "checkpoint.safetensors"))
    torch.save({"string_to_param": {"*": torch.ones(2, 3, 4)}}, folder / "cube.pt")
    with caplog.at_level(logging.ERROR, logger=ti.__name__):
        db = load(folder)
    assert list(db.word_embeddings) == ["good"]
    assert sorted(db.errors) == ["checkpoint", "cube", "custom", "empty", "garbage", "junk", "truncated", "two_terms"]
    assert "NotAllowed" in db.errors["custom"] and "\n" not in db.errors["custom"]
    assert "exactly one" in db.errors["two_terms"] and "empty file" in db.errors["empty"]
    assert all(str(folder) in message for message in db.errors.values())
    assert "garbage.pt" in caplog.text


# --- names and reloading -----------------------------------------------------------------------

def test_name_clash_later_path_wins(folder, caplog):
    (folder / "b").mkdir()
    save_pt(folder / "a.pt", rand(1, 32))
    save_pt(folder / "b" / "a.pt", rand(2, 32))
    with caplog.at_level(logging.WARNING, logger=ti.__name__):
        db = load(folder)
    assert db.word_embeddings["a"].vectors == 2 and "replaces" in caplog.text
    # a later skipped file also replaces an earlier usable one: one name, one file
    save_pt(folder / "b" / "a.pt", rand(2, 16))
    bump_mtime(folder / "b" / "a.pt")
    db.load_textual_inversion_embeddings(SD1)
    assert "a" not in db.word_embeddings and db.skipped_embeddings["a"].shape == 16


def test_reload_only_when_something_changed(folder, monkeypatch):
    reads = []
    real = ti.load_embedding_file
    monkeypatch.setattr(ti, "load_embedding_file", lambda path: reads.append(os.path.basename(path)) or real(path))
    save_pt(folder / "one.pt", rand(1, 32))
    save_pt(folder / "two.pt", rand(1, 32))
    db = EmbeddingDatabase([str(folder)])
    db.load_textual_inversion_embeddings(SD1)
    assert sorted(reads) == ["one.pt", "two.pt"]

    reads.clear()
    db.load_textual_inversion_embeddings(SD1)
    db.load_textual_inversion_embeddings(SDXL)  # new widths: re-sorted without reading files again
    db.load_textual_inversion_embeddings(SD1)
    assert reads == [] and sorted(db.word_embeddings) == ["one", "two"]

    save_pt(folder / "two.pt", rand(3, 32))  # changed content: only that file is read again
    bump_mtime(folder / "two.pt")
    save_pt(folder / "three.pt", rand(1, 32))
    db.load_textual_inversion_embeddings(SD1)
    assert sorted(reads) == ["three.pt", "two.pt"] and db.word_embeddings["two"].vectors == 3

    reads.clear()
    os.remove(folder / "one.pt")
    db.load_textual_inversion_embeddings(SD1)
    assert reads == [] and sorted(db.word_embeddings) == ["three", "two"]

    db.load_textual_inversion_embeddings(SD1, force_reload=True)
    assert sorted(reads) == ["three.pt", "two.pt"]


def test_add_embedding_dir_and_missing_dir(tmp_path, folder):
    other = tmp_path / "more"
    other.mkdir()
    save_pt(other / "extra.pt", rand(1, 32))
    db = EmbeddingDatabase([str(tmp_path / "does-not-exist")])
    db.load_textual_inversion_embeddings(SD1)
    assert db.word_embeddings == {}
    db.add_embedding_dir(str(other))
    db.load_textual_inversion_embeddings(SD1)
    assert list(db.word_embeddings) == ["extra"]


# --- matching ----------------------------------------------------------------------------------

def test_find_embedding_at_position_with_clip_tokens(folder):
    save_pt(folder / "my-style.pt", rand(1, 32))
    save_pt(folder / "my-style-v2.pt", rand(2, 32))
    save_pt(folder / "MyStyle.pt", rand(3, 32))
    save_pt(folder / "wide.pt", rand(1, 64))  # skipped: its word stays plain text
    db = load(folder)
    tokenize = ti._clip_tokenize
    tokens = tokenize("a My-Style-V2 and my-style, mystyle mystylex wide")

    found = [(i, *db.find_embedding_at_position(tokens, i)) for i in range(len(tokens))]
    hits = [(i, emb.name, n) for i, emb, n in found if emb is not None]
    v2_len = len(tokenize("my-style-v2"))
    assert v2_len > 1 and hits[0] == (1, "my-style-v2", v2_len)  # longest match, case-insensitive
    start = 1 + v2_len + 1  # after "and"
    assert hits[1] == (start, "my-style", len(tokenize("my-style")))
    mystyle_at = start + len(tokenize("my-style,"))
    assert hits[2] == (mystyle_at, "MyStyle", 2)
    assert len(hits) == 3  # "mystylex" splits into other BPE pieces; "wide" is skipped
    assert db.find_embedding_at_position(tokens, len(tokens)) == (None, None)


def test_register_embedding_is_matched_until_next_rescan(folder):
    save_pt(folder / "alpha.pt", rand(1, 32))
    db = load(folder, tokenize=lambda text: [ord(c) for c in text])
    db.find_embedding_at_position([1], 0)  # builds the lookup before the registration
    db.register_embedding(Embedding(rand(2, 32), "beta"))
    assert db.find_embedding_at_position([ord(c) for c in "xbeta"], 1)[0].name == "beta"
    db.load_textual_inversion_embeddings(SD1, force_reload=True)
    assert list(db.word_embeddings) == ["alpha"]


def test_lookup_rebuilt_after_reload(folder):
    save_pt(folder / "alpha.pt", rand(1, 32))
    db = load(folder, tokenize=lambda text: [ord(c) for c in text])
    assert db.find_embedding_at_position([ord(c) for c in "alphabet"], 0)[1] == 5
    os.rename(folder / "alpha.pt", folder / "alp.pt")
    db.load_textual_inversion_embeddings(SD1)
    emb, count = db.find_embedding_at_position([ord(c) for c in "alphabet"], 0)
    assert emb.name == "alp" and count == 3


# --- API and hashes ----------------------------------------------------------------------------

def test_api_listing_shape(folder):
    save_pt(folder / "zeta.pt", rand(2, 32), step=7, sd_checkpoint="cafe", sd_checkpoint_name="m")
    save_pt(folder / "Alpha.pt", rand(1, 32))
    save_pt(folder / "wide.pt", rand(1, 1024))
    safetensors.torch.save_file({"clip_l": rand(1, 32), "clip_g": rand(1, 48)}, str(folder / "xl.safetensors"))
    listing = load(folder).api_listing()
    assert list(listing) == ["loaded", "skipped"]
    assert list(listing["loaded"]) == ["Alpha", "zeta"]
    assert listing["loaded"]["zeta"] == {"step": 7, "sd_checkpoint": "cafe", "sd_checkpoint_name": "m",
                                         "shape": 32, "vectors": 2}
    assert listing["skipped"] == {
        "wide": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 1024, "vectors": 1},
        "xl": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 80, "vectors": 1},
    }


def test_sha256_and_shorthash(tmp_path, folder):
    save_pt(folder / "hashed.pt", rand(1, 32))
    expected = hashlib.sha256((folder / "hashed.pt").read_bytes()).hexdigest()
    emb = load(folder).word_embeddings["hashed"]
    assert emb.hash == expected and emb.shorthash == expected[:12]

    cache = hashes.HashCache(str(tmp_path / "cache.json"))
    cached = load(folder, hash_cache=cache).word_embeddings["hashed"]
    assert cached.hash == expected
    assert cache.get("textual_inversion", str(folder / "hashed.pt"), str(folder / "hashed.pt")) == expected


def test_widths_for_model():
    class Encoder:
        def __init__(self, size):
            self.config = type("Config", (), {"hidden_size": size})()

    class Model:
        def __init__(self, sizes, is_sdxl):
            self.text_encoders = [Encoder(s) for s in sizes]
            self.is_sdxl = is_sdxl

    assert ti.widths_for_model(Model([768], False)) == {"default": 768}
    assert ti.widths_for_model(Model([32, 48], True)) == SDXL
    assert ti.widths_for_model(None) is None


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys, modules.textual_inversion; "
            "print(any(m.split('.')[0] in ('gradio', 'transformers', 'diffusers') for m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_timing_sanity():
    start = time.perf_counter()
    image_embedding.lcg_nibbles(2_000_000)
    assert time.perf_counter() - start < 2.0
