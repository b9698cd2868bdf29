"""Extra-networks cards without a server (networks.md §8.2, §8.3, §8.5): Replace preview's file
name, infotext and stale previews, the preview lookup order, the Tree view, the training facts
of kohya `ss_*` metadata, the metadata view's text and the `ssmd_cover_images` covers."""
import base64
import io
import json
import os
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from PIL import Image

from modules.infotext_utils import read_info_from_image
from modules.networks import card_metadata, cards
from modules.networks.card_html import build_tree, tree_html
from modules.networks.files import natural_key
from modules.ui import extra_networks_preview as preview

INFOTEXT = "a lighthouse\nSteps: 2, Sampler: Euler, Seed: 5, Size: 64x64"


def red(size=8):
    return Image.new("RGB", (size, size), (200, 30, 30))


def touch_image(path, colour=(0, 0, 200)):
    Image.new("RGB", (4, 4), colour).save(path)


# ------------------------------------------------------------------------------- Replace preview

@pytest.mark.parametrize("page,expected", [("lora", "ink.png"), ("checkpoints", "ink.png"),
                                           ("textual_inversion", "ink.preview.png"),
                                           ("hypernetworks", "ink.preview.png")])
def test_replace_preview_name_per_page_and_png_infotext(tmp_path, page, expected):
    network = tmp_path / "ink.safetensors"
    network.write_bytes(b"x")
    path = preview.save_preview(page, str(network), red(), INFOTEXT, "png")
    assert path == str(tmp_path / expected)
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (8, 8)
        assert saved.text["parameters"] == INFOTEXT  # the PNG text chunk, read by PIL itself
    assert cards.find_preview(str(network), "png") == path


def test_replace_preview_as_jpeg_keeps_the_infotext(tmp_path):
    network = tmp_path / "ink.safetensors"
    network.write_bytes(b"x")
    path = preview.save_preview("lora", str(network), red(), INFOTEXT, "jpg")
    assert path == str(tmp_path / "ink.jpg") and cards.find_preview(str(network), "jpg") == path
    with Image.open(path) as saved:
        assert saved.format == "JPEG"
        assert read_info_from_image(saved)[0] == INFOTEXT


def test_replace_preview_overwrites_the_shown_preview_and_touches_no_other_file(tmp_path):
    network = tmp_path / "ink.safetensors"
    network.write_bytes(b"x")
    shown, other, later = tmp_path / "ink.png", tmp_path / "ink.preview.png", tmp_path / "ink.webp"
    for file in (shown, other, later):
        touch_image(file)
    other_bytes, later_bytes = other.read_bytes(), later.read_bytes()
    assert cards.find_preview(str(network), "jpg") == str(shown)

    path = preview.save_preview("lora", str(network), red(), INFOTEXT, "jpg")
    assert path == str(shown) and cards.find_preview(str(network), "jpg") == path  # the card shows the new one
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.getpixel((0, 0))[:3] == red().getpixel((0, 0))[:3]
        assert saved.text["parameters"] == INFOTEXT
    assert other.read_bytes() == other_bytes and later.read_bytes() == later_bytes


def test_replace_preview_never_removes_the_network_file_itself(tmp_path):
    embedding = tmp_path / "emb.png"  # a TI embedding stored in a PNG
    touch_image(embedding, (1, 2, 3))
    before = embedding.read_bytes()
    path = preview.save_preview("textual_inversion", str(embedding), red(), None, "png")
    assert path == str(tmp_path / "emb.preview.png")
    assert embedding.read_bytes() == before
    with Image.open(path) as saved:
        assert "parameters" not in saved.text  # no infotext: none written


def test_preview_lookup_goes_extension_by_extension(tmp_path):
    network = tmp_path / "net.safetensors"
    network.write_bytes(b"x")
    stem = str(tmp_path / "net")
    assert cards.preview_candidates(str(network), "avif") == [
        f"{stem}.png", f"{stem}.preview.png", f"{stem}.jpg", f"{stem}.preview.jpg", f"{stem}.jpeg",
        f"{stem}.preview.jpeg", f"{stem}.webp", f"{stem}.preview.webp", f"{stem}.gif", f"{stem}.preview.gif",
        f"{stem}.avif", f"{stem}.preview.avif"]
    assert cards.preview_candidates(str(network), "png")[-1] == f"{stem}.preview.gif"  # not listed twice
    touch_image(tmp_path / "net.jpg")
    touch_image(tmp_path / "net.preview.png")
    assert cards.find_preview(str(network), "png") == f"{stem}.preview.png"


def test_selected_image_and_its_infotext():
    first, second = red(), Image.new("RGB", (8, 8), (0, 0, 0))
    image, text = preview.selected_image([(first, "a"), (second, "b")], ["one", "two"], 1)
    assert image is second and text == "two"
    assert preview.selected_image([first], None, 0) == (first, None)
    with pytest.raises(ValueError, match="no image in the gallery"):
        preview.selected_image([], [], 0)
    with pytest.raises(ValueError, match="No image selected"):
        preview.selected_image([first], ["one"], -1)


# ------------------------------------------------------------------------------------- Tree view

class TreeReader(HTMLParser):
    """The tree HTML as nested {"folder": name, "path": data-path, "files": [...], "folders": [...]}."""

    def __init__(self):
        super().__init__()
        self.root = {"folder": None, "path": None, "files": [], "folders": []}
        self.stack, self.field = [self.root], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details":
            node = {"folder": "", "path": None, "files": [], "folders": []}
            self.stack[-1]["folders"].append(node)
            self.stack.append(node)
        elif tag == "summary":
            self.stack[-1]["path"], self.field = attrs["data-path"], "folder"
        elif "tree-file" in attrs.get("class", ""):
            self.stack[-1]["files"].append(attrs["data-name"])

    def handle_endtag(self, tag):
        if tag == "details":
            self.stack.pop()
        self.field = None

    def handle_data(self, data):
        if self.field == "folder":
            self.stack[-1]["folder"] += data.replace("📁", "").strip()


def read_tree(html_text):
    reader = TreeReader()
    reader.feed(html_text)
    return reader.root


def test_tree_nests_folders_in_natural_order_before_files():
    sep = os.sep
    entries = [("top.safetensors", "top"),
               (f"styles{sep}ink.safetensors", "ink"),
               (f"styles{sep}old{sep}v10.safetensors", "v10"),
               (f"styles{sep}old{sep}v2.safetensors", "v2"),
               (f"chars10{sep}b.safetensors", "b"),
               (f"chars2{sep}a.safetensors", "a"),
               (f"chars2{sep}c.safetensors", "c")]
    opts = SimpleNamespace(extra_networks_dir_button_function=False, extra_networks_tree_view_default_width=180)
    text = tree_html("txt2img", "lora", entries, opts, natural_key)
    assert text.startswith("<div class='extra-network-tree' style='width:180px'>")
    tree = read_tree(text)
    assert tree["files"] == ["top"]  # after the folders of the top level
    assert [f["folder"] for f in tree["folders"]] == ["chars2", "chars10", "styles"]  # natural order
    chars2, chars10, styles = tree["folders"]
    assert (chars2["files"], chars10["files"], styles["files"]) == (["a", "c"], ["b"], ["ink"])
    assert chars2["path"] == f"chars2{sep}"
    (old,) = styles["folders"]
    assert (old["folder"], old["path"], old["files"], old["folders"]) == ("old", f"styles{sep}old{sep}", ["v10", "v2"], [])
    assert text.index(">📁 styles<") < text.index("data-name='top'")


def test_tree_folder_paths_with_the_leading_separator_option():
    opts = SimpleNamespace(extra_networks_dir_button_function=True, extra_networks_tree_view_default_width=0)
    text = tree_html("img2img", "lora", [(os.path.join("a", "b", "x.pt"), "x")], opts)
    tree = read_tree(text)
    assert tree["folders"][0]["path"] == f"{os.sep}a{os.sep}"
    assert tree["folders"][0]["folders"][0]["path"] == f"{os.sep}a{os.sep}b{os.sep}"
    assert "style=" not in text.split(">", 1)[0]  # width 0: no fixed width
    assert "#img2img_lora_extra_search" in text


def test_build_tree_counts_files_per_folder():
    sep = os.sep
    tree = build_tree([(f"a{sep}1.pt", "1"), (f"a{sep}2.pt", "2"), (f"a{sep}b{sep}3.pt", "3"), ("4.pt", "4")])
    assert tree[None] == [("4.pt", "4")]
    assert tree["a"][None] == [("1.pt", "1"), ("2.pt", "2")]
    assert tree["a"]["b"] == {None: [("3.pt", "3")]}


# -------------------------------------------------------------------------------- training facts

def kohya_metadata():
    return {
        "ss_output_name": "inkwash", "ss_sd_model_name": "v1-5-pruned.safetensors", "ss_clip_skip": "None",
        "ss_network_module": "networks.lora", "ss_training_started_at": "1700000000.5",
        "ss_bucket_info": json.dumps({"buckets": {
            "0": {"resolution": [512, 512], "count": 10}, "1": {"resolution": [448, 576], "count": 30},
            "2": {"resolution": [576, 448], "count": 10}, "3": {"resolution": [384, 640], "count": 2},
            "4": {"resolution": [640, 384], "count": 20}}}),
        "ss_dataset_dirs": {"10_ink": {"n_repeats": 10, "img_count": 12}, "5_wash": {"n_repeats": 5, "img_count": 7}},
        "ss_tag_frequency": {"10_ink": {"ink": 5, "wash": 2, "red": 1}, "5_wash": {"wash": 4, " ink ": 1, "blue": 1}},
    }


def test_training_info_from_kohya_metadata():
    info = card_metadata.training_info(kohya_metadata())
    assert info == {
        "output name": "inkwash", "model": "v1-5-pruned.safetensors", "network module": "networks.lora",
        "training date": "2023-11-14 22:13",  # 1700000000 s after the epoch, UTC
        "resolutions": ["448x576", "640x384", "512x512", "576x448"],  # by count, ties in bucket order
        "dataset size": 19,
        "tags": [("ink", 6), ("wash", 6), ("red", 1), ("blue", 1)],
    }  # "ss_clip_skip": "None" is left out


def test_training_info_resplits_long_captions_and_keeps_24_tags():
    captions = {"d": {"a woman with red hair, watercolor": 3, "a man with red hat": 1}}
    words = card_metadata.training_info({"ss_tag_frequency": captions})["tags"]
    # mean tag length 25.5 >= 16: words of >= 3 characters, counts summed ("a" is dropped)
    assert words == [("with", 4), ("red", 4), ("woman", 3), ("hair", 3), ("watercolor", 3), ("man", 1), ("hat", 1)]
    many = {"d": {f"tag{i:02d}": 100 - i for i in range(30)}}
    tags = card_metadata.training_info({"ss_tag_frequency": json.dumps(many)})["tags"]
    assert tags == [(f"tag{i:02d}", 100 - i) for i in range(24)]
    assert card_metadata.training_info({}) == {}
    assert card_metadata.training_info({"ss_bucket_info": "not json", "ss_training_started_at": "x"}) == {}


# ------------------------------------------------------------------------ metadata text and covers

def png_base64(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), colour).save(buffer, format="PNG")
    return buffer.getvalue(), base64.b64encode(buffer.getvalue()).decode()


def test_metadata_text_leaves_out_the_covers_and_keeps_non_ascii():
    _, cover = png_base64((1, 2, 3))
    metadata = {"ss_output_name": "tinta china", "ss_tag_frequency": {"d": {"水墨": 2}},
                "ssmd_cover_images": json.dumps([cover])}
    text = card_metadata.metadata_text(metadata)
    assert text == '{\n    "ss_output_name": "tinta china",\n    "ss_tag_frequency": {\n        "d": {\n' \
                   '            "水墨": 2\n        }\n    }\n}'
    assert card_metadata.metadata_text({"ssmd_cover_images": json.dumps([cover])}) is None
    assert card_metadata.metadata_text({}) is None


def test_cover_images_decode_and_report_what_is_missing():
    first, first_text = png_base64((1, 2, 3))
    second, second_text = png_base64((4, 5, 6))
    metadata = {"ssmd_cover_images": json.dumps(["", first_text, "data:image/png;base64," + second_text])}
    assert card_metadata.first_cover_index(metadata) == 1
    assert card_metadata.decode_cover(metadata, 1) == first
    assert card_metadata.decode_cover(metadata, 2) == second  # a data URL works too
    assert card_metadata.image_media_type(first) == "image/png"
    with pytest.raises(LookupError, match="no cover image 0"):
        card_metadata.decode_cover(metadata, 0)
    with pytest.raises(LookupError, match=r"no cover image 3 \(the file has 2\)"):
        card_metadata.decode_cover(metadata, 3)
    assert card_metadata.first_cover_index({"ssmd_cover_images": "not json"}) is None
    assert card_metadata.first_cover_index({}) is None
