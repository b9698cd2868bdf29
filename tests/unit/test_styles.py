"""Prompt styles (prompt-syntax.md §2): CSV files, applying, extracting, saving."""
import dataclasses
import os

import pytest

from modules import shared, styles
from modules.styles import PromptStyle, StyleDatabase, apply_styles_to_prompt

HEADER = "name,prompt,negative_prompt\n"


def write(path, text, bom=False):
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.fixture
def db(tmp_path):
    path = write(tmp_path / "styles.csv", HEADER + "Cinematic,\"cinematic still of {prompt}, shallow depth of field\","
                 "\"cartoon, {prompt}\"\nCold,blue tint,warm\nEmpty,,\n", bom=True)
    return StyleDatabase([str(path)])


def test_reads_csv_with_bom_and_keeps_order(db, tmp_path):
    assert list(db.styles) == ["Cinematic", "Cold", "Empty"]
    cold = db.styles["Cold"]
    assert cold == PromptStyle("Cold", "blue tint", "warm", str(tmp_path / "styles.csv"))
    no_bom = StyleDatabase([str(write(tmp_path / "plain.csv", HEADER + "A,x,y\n"))])
    assert no_bom.styles["A"].prompt == "x"
    legacy = StyleDatabase([str(write(tmp_path / "old.csv", "name,text\nOld,old text\n"))])
    assert legacy.styles["Old"] == PromptStyle("Old", "old text", "", str(tmp_path / "old.csv"))


def test_missing_file_is_an_empty_database(tmp_path):
    db = StyleDatabase([str(tmp_path / "nope.csv")])
    assert db.styles == {} and db.default_file == str(tmp_path / "nope.csv")


def test_placeholder_and_join_rules(db):
    assert apply_styles_to_prompt("red car", ["film grain"]) == "red car, film grain"
    assert apply_styles_to_prompt("", ["film grain"]) == "film grain"
    assert apply_styles_to_prompt("red car", [""]) == "red car"
    assert apply_styles_to_prompt("cat", ["{prompt} and {prompt}"]) == "cat and cat"
    # the example of prompt-syntax.md §2
    assert db.apply_styles_to_prompt("harbor at night", ["Cinematic", "Cold"]) == \
        "cinematic still of harbor at night, shallow depth of field, blue tint"
    assert db.apply_negative_styles_to_prompt("ugly", ["Cinematic", "Cold"]) == "cartoon, ugly, warm"
    assert db.apply_styles_to_prompt("x", ["Unknown"]) == "x"  # unknown names change nothing


def test_apply_extract_round_trip(db):
    prompt = db.apply_styles_to_prompt("harbor at night", ["Cinematic", "Cold"])
    negative = db.apply_negative_styles_to_prompt("ugly", ["Cinematic", "Cold"])
    found, rest, rest_negative = db.extract_styles_from_prompt(prompt, negative)
    assert found == ["Cinematic", "Cold"]
    assert (rest, rest_negative) == ("harbor at night", "ugly")
    # a style is extracted only when both its parts match
    assert db.extract_styles_from_prompt("a, blue tint", "nothing warm here")[0] == []


def test_save_style_edit_and_delete_rewrite_only_their_file(tmp_path):
    first = write(tmp_path / "a.csv", HEADER + "One,1,\n")
    second = write(tmp_path / "b.csv", HEADER + "Two,2,\n", bom=True)
    db = StyleDatabase([str(first), str(second)])
    assert list(db.styles) == ["One", "Two"]
    second_before = second.read_bytes()

    db.save_style("New", "fresh, \"quoted\"", "bad")  # new styles go to the first file
    assert db.styles["New"].path == str(first)
    assert second.read_bytes() == second_before
    assert StyleDatabase([str(first)]).styles["New"].prompt == "fresh, \"quoted\""

    first_before = first.read_bytes()
    db.save_style("Two", "2 edited", "")  # an edit stays in the style's own file
    assert first.read_bytes() == first_before
    assert StyleDatabase([str(second)]).styles["Two"].prompt == "2 edited"

    assert db.delete_style("One") and not db.delete_style("One")
    db.reload()
    assert list(db.styles) == ["New", "Two"]
    with pytest.raises(ValueError):
        db.save_style("  ", "x", "y")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = write(tmp_path / "styles.csv", HEADER + "Keep,me,\n")
    db = StyleDatabase([str(path)])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        db.save_style("Other", "x", "")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["styles.csv"]  # no temp file left
    monkeypatch.undo()
    db.save_styles()
    assert StyleDatabase([str(path)]).styles["Other"].prompt == "x"  # kept in memory, saved now


def test_wildcards_duplicates_and_default_file(tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    write(folder / "1-base.csv", HEADER + "Same,from base,\nBase,b,\n")
    write(folder / "2-more.csv", HEADER + "Same,from more,\n")
    db = StyleDatabase([str(folder / "*.csv")])
    assert db.default_file == str(folder / "1-base.csv")
    assert db.styles["Same"].prompt == "from more"  # a later file wins
    db.save_style("Added", "a", "")
    assert "Added" in StyleDatabase([str(folder / "1-base.csv")]).styles
    # the duplicate in the first file survives saving
    assert StyleDatabase([str(folder / "1-base.csv")]).styles["Same"].prompt == "from base"
    empty = StyleDatabase([str(tmp_path / "none" / "*.csv")])
    assert empty.default_file == str(tmp_path / "none" / "styles.csv")


def test_database_follows_the_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "paths", dataclasses.replace(shared.paths, data=str(tmp_path)))
    monkeypatch.setattr(shared.cmd_opts, "styles_file", [])
    write(tmp_path / "styles.csv", HEADER + "Default,d,\n")
    styles.reset_database()
    assert list(styles.get_database().styles) == ["Default"]
    assert styles.get_database() is styles.get_database()
    other = write(tmp_path / "other.csv", HEADER + "Other,o,\n")
    monkeypatch.setattr(shared.cmd_opts, "styles_file", [str(other)])
    assert list(styles.get_database().styles) == ["Other"]
    styles.reset_database()
