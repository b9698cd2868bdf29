"""Tests for modules/prompt_parser.py against docs spec prompt-syntax.md §5-§8, §13, §14.

Note: in the spec's markdown tables `\\|` is the table escape for `|`; the prompts below use the
plain character.
"""

import random
import time

import lark
import pytest
import torch

from modules import prompt_parser as pp
from modules.prompt_parser import (
    ComposableScheduledPromptConditioning,
    MulticondLearnedConditioning,
    ScheduledPromptConditioning,
    SdConditioning,
    get_learned_conditioning,
    get_learned_conditioning_prompt_schedules,
    get_multicond_learned_conditioning,
    get_multicond_prompt_list,
    parse_prompt_attention,
    reconstruct_cond_batch,
    reconstruct_multicond_batch,
)


def schedule(prompt, steps, hires_steps=None, old=False):
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]


# --------------------------------------------------------------------------------------------------
# §6.4 scheduling

SPEC_SCHEDULES = [
    ("a [dog:cat:4] run", 8, [[4, "a dog run"], [8, "a cat run"]]),
    ("a [dog:cat:0.25] run", 8, [[2, "a dog run"], [8, "a cat run"]]),
    ("portrait, [red:blue:3] eyes, [smile::0.5]", 10,
     [[3, "portrait, red eyes, smile"], [5, "portrait, blue eyes, smile"], [10, "portrait, blue eyes, "]]),
    ("[old man:young man:2] [sitting|standing]", 4,
     [[1, "old man sitting"], [2, "old man standing"], [3, "young man sitting"], [4, "young man standing"]]),
    ("x [y:z:5]", 4, [[4, "x y"]]),
    ("x [y:z:0.0]", 4, [[4, "x z"]]),
    ("x [y:z:1.0]", 4, [[4, "x y"]]),
    ("tree [ (autumn:1.3) : (winter:1.2) : 0.6 ]", 10,
     [[6, "tree  (autumn:1.3) "], [10, "tree  (winter:1.2) "]]),
    ("[a:[b:c:0.8]:0.2]", 10, [[2, "a"], [8, "b"], [10, "c"]]),
    ("[cat|dog|fox] [day:night:0.5]", 6,
     [[1, "cat day"], [2, "dog day"], [3, "fox day"], [4, "cat night"], [5, "dog night"], [6, "fox night"]]),
    ("a [b|c] [d|e|f]", 6,
     [[1, "a b d"], [2, "a c e"], [3, "a b f"], [4, "a c d"], [5, "a b e"], [6, "a c f"]]),
    ("[|x]", 4, [[1, ""], [2, "x"], [3, ""], [4, "x"]]),
    ("[a|[b:c:2]]", 4, [[1, "a"], [2, "b"], [3, "a"], [4, "c"]]),
    ("[ant:: 3 ]", 6, [[3, "ant"], [6, ""]]),
    ("[:bee:0.5]", 6, [[3, ""], [6, "bee"]]),
    ("a (b [c:d:2]) e", 5, [[2, "a (b c) e"], [5, "a (b d) e"]]),
    ("line one [x:y:2]\nline two", 4, [[2, "line one x\nline two"], [4, "line one y\nline two"]]),
    ("[a:b:-2]", 5, [[5, "b"]]),
    ("[a:b:+3]", 5, [[3, "a"], [5, "b"]]),
    ("[a:b:1e1]", 20, [[10, "a"], [20, "b"]]),
    ("[a:b:2.]", 10, [[10, "a"]]),
    ("sky ]] broken [[ x", 10, [[10, "sky ]] broken [[ x"]]),
    ("[a:b:c]", 10, [[10, "[a:b:c]"]]),
    ("[a|b:3]", 10, [[10, "[a|b:3]"]]),
    ("a \\[b:c:2\\] d", 10, [[10, "a \\[b:c:2\\] d"]]),
]

# behaviour documented by A1111's own examples, and our additions
MORE_SCHEDULES = [
    ("a [b:.5] c", 10, [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", 10, [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[fe|||]male", 5, [[1, "female"], [2, "male"], [3, "male"], [4, "male"], [5, "female"]]),
    ("[a|(b:1.1)]", 3, [[1, "a"], [2, "(b:1.1)"], [3, "a"]]),
    ("", 10, [[10, ""]]),
    ("plain prompt, (with:1.2) emphasis", 10, [[10, "plain prompt, (with:1.2) emphasis"]]),
    ("[a:b:0]", 10, [[10, "b"]]),
    ("[a:b:10]", 10, [[10, "a"]]),
    ("[a:b:9]", 10, [[9, "a"], [10, "b"]]),
    ("[a:b: 2 ]", 4, [[2, "a"], [4, "b"]]),
    ("[a:b:2 x]", 4, [[4, "[a:b:2 x]"]]),
    ("[a:b:1.5e-1]", 20, [[3, "a"], [20, "b"]]),  # has '.', so a fraction: 0.15 * 20
    ("[a:b:1e999]", 10, [[10, "a"]]),
    ("[a:b:-1e999]", 10, [[10, "b"]]),
    ("[a:b:0.99]", 10, [[9, "a"], [10, "b"]]),  # trunc(9.9)
    ("[[a]:(b:1.2):2]", 4, [[2, "[a]"], [4, "(b:1.2)"]]),
    ("[a:b:c:2]", 4, [[4, "[a:b:c:2]"]]),
    ("[a:b]", 4, [[4, "[a:b]"]]),
    ("[a]", 4, [[4, "[a]"]]),
    ("[]", 4, [[4, "[]"]]),
    ("[:2]", 4, [[2, ""], [4, ""]]),  # an entry at every `when`, even if the text does not change
    ("[::2]", 4, [[2, ""], [4, ""]]),
    ("[x:2] y", 4, [[2, " y"], [4, "x y"]]),
    ("\\\\[a:b:2]", 4, [[2, "\\\\a"], [4, "\\\\b"]]),  # escaped backslash, then a real bracket
    ("[a\\:b:c:2]", 4, [[2, "a\\:b"], [4, "c"]]),  # escaped colon is text
    ("[a\\|b|c]", 2, [[1, "a\\|b"], [2, "c"]]),
    ("[a:b:2] (x|y)", 4, [[4, "[a:b:2] (x|y)"]]),  # `|` that no alternation consumes: all literal
    ("a | b [c:d:2]", 4, [[4, "a | b [c:d:2]"]]),
    ("[a:b:2] tail\\", 4, [[4, "[a:b:2] tail\\"]]),  # lone backslash: cannot parse
    ("[a:b:2] x\\\ny", 4, [[4, "[a:b:2] x\\\ny"]]),
    ("[a\nb:c\n:2]", 4, [[2, "a\nb"], [4, "c\n"]]),
    ("[a|b] [c|d]", 1, [[1, "a c"]]),
    ("[a|[b|c]]", 4, [[1, "a"], [2, "c"], [3, "a"], [4, "c"]]),  # inner option picked at the same step
    ("[[a|b]:c:2]", 4, [[1, "a"], [2, "b"], [3, "c"], [4, "c"]]),
    ("[a:[b|c]:2]", 4, [[1, "a"], [2, "a"], [3, "b"], [4, "c"]]),
    ("(a [b:c:2]", 4, [[2, "(a b"], [4, "(a c"]]),
    ("[a [b:c:2]", 4, [[2, "[a b"], [4, "[a c"]]),
    ("[b:c:2]]", 4, [[2, "b]"], [4, "c]"]]),
    ("([b:c:2]:1.3)", 4, [[2, "(b:1.3)"], [4, "(c:1.3)"]]),
    ("[(b:c:1):d:2]", 4, [[4, "[(b:c:1):d:2]"]]),  # (b:c:1) is no emphasis, so no prompt either
    ("[<x>:y:2]", 4, [[2, "<x>"], [4, "y"]]),
    ("Ünï [ä:ö:2] 猫", 4, [[2, "Ünï ä 猫"], [4, "Ünï ö 猫"]]),
    ("[a AND b:c:2]", 4, [[2, "a AND b"], [4, "c"]]),  # AND is split earlier, not here
]


@pytest.mark.parametrize("prompt,steps,expected", SPEC_SCHEDULES + MORE_SCHEDULES)
def test_schedules(prompt, steps, expected):
    assert schedule(prompt, steps) == expected


@pytest.mark.parametrize("prompt,hires_steps,expected", [
    ("[snow:rain:12]", 6, [[2, "snow"], [6, "rain"]]),
    ("[snow:rain:1.25]", 8, [[2, "snow"], [8, "rain"]]),
    ("[snow:rain:0.5]", 8, [[8, "rain"]]),
    ("[snow:rain:5]", 8, [[8, "rain"]]),
    ("[snow:rain:10]", 8, [[8, "rain"]]),
    ("[snow:rain:18]", 8, [[8, "snow"]]),
    ("[snow:rain:2.0]", 8, [[8, "snow"]]),
    ("a [b:.5] c", 10, [[10, "a b c"]]),
    ("a [b:1.5] c", 10, [[5, "a  c"], [10, "a b c"]]),
    ("[x|y]", 3, [[1, "x"], [2, "y"], [3, "x"]]),
])
def test_hires_schedules(prompt, hires_steps, expected):
    assert schedule(prompt, 10, hires_steps) == expected


@pytest.mark.parametrize("prompt,expected", [
    ("[snow:rain:0.5]", [[5, "snow"], [10, "rain"]]),
    ("[snow:rain:3]", [[3, "snow"], [10, "rain"]]),
    ("[snow:rain:1.5]", [[1, "snow"], [10, "rain"]]),
    ("[snow:rain:1.0]", [[1, "snow"], [10, "rain"]]),
])
def test_old_scheduling(prompt, expected):
    assert schedule(prompt, 10, old=True) == expected
    # A1111 ignores the hires offsets and step count with old scheduling
    assert schedule(prompt, 10, 6, old=True) == expected


def test_schedules_for_many_prompts_keep_order_and_copies():
    prompts = ["[a:b:2]", "x", "[a:b:2]"]
    res = get_learned_conditioning_prompt_schedules(prompts, 4)
    assert res == [[[2, "a"], [4, "b"]], [[4, "x"]], [[2, "a"], [4, "b"]]]
    res[0][0][1] = "changed"
    assert res[2][0][1] == "a"
    assert get_learned_conditioning_prompt_schedules(SdConditioning(prompts), 4)[1] == [[4, "x"]]


def test_zero_and_one_steps_do_not_fail():
    assert schedule("[a|b] [c:d:0.5]", 1) == [[1, "a d"]]
    assert schedule("[a|b] [c:d:0.5]", 0) == [[0, "b c"]]
    assert schedule("[a:b:1e999]", 0) == [[0, "a"]]


# --------------------------------------------------------------------------------------------------
# §7: which entry the sampler uses (first entry with counter <= end_step)

def active_texts(prompt, steps, evaluations=None):
    sched = schedule(prompt, steps)
    out = []
    for c in range(steps if evaluations is None else evaluations):
        out.append(next((text for end, text in sched if c <= end), sched[0][1]))
    return out


def test_counter_rule_integer_and_fraction():
    assert active_texts("[a:b:3]", 10) == ["a"] * 4 + ["b"] * 6
    assert active_texts("[a:b:0.5]", 10) == ["a"] * 6 + ["b"] * 4


def test_counter_rule_alternation_uses_first_option_twice():
    assert active_texts("[x|y]", 10) == ["x", "x", "y", "x", "y", "x", "y", "x", "y", "x"]


def test_second_order_sampler_counts_twice():
    # Heun, 20 steps: schedule built with S = 40; `a` for the first 11 evaluations
    texts = active_texts("[a:b:10]", 40)
    assert texts[:11] == ["a"] * 11 and texts[11] == "b"


def test_img2img_switch_measured_against_requested_steps():
    # 20 steps, denoise 0.5 -> t_enc 10, 11 executed steps; when = 10, so `a` throughout
    assert active_texts("[a:b:0.5]", 20, evaluations=11) == ["a"] * 11


# --------------------------------------------------------------------------------------------------
# §6.1: parsing only the outer [...] pairs must equal parsing the whole prompt with the grammar

def _compile_whole(prompt):
    try:
        tree = pp.schedule_parser.parse(prompt)
    except lark.exceptions.LarkError:
        return None
    return pp._ToParts().transform(tree)


def _random_prompt(rng, depth=0):
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(["a", "b c", " ", "", "1", ":", "|", "(", "]", "\\[", "\\", "x:0.5"])
    inner = "".join(_random_prompt(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    other = _random_prompt(rng, depth + 1)
    return rng.choice([
        f"[{inner}:{other}:{rng.choice(['1', '2', '0.5', ' 3 ', '1.5', 'q'])}]",
        f"[{inner}|{other}]", f"({inner})", f"({inner}:{other})", f"[{inner}]", inner,
    ])


def test_segmented_parse_equals_whole_prompt_parse(monkeypatch):
    rng = random.Random(1234)
    prompts = [_random_prompt(rng) + _random_prompt(rng) for _ in range(300)]
    fast = [(schedule(p, 6), schedule(p, 6, 4)) for p in prompts]
    monkeypatch.setattr(pp, "_compile_schedule", _compile_whole)
    whole = [(schedule(p, 6), schedule(p, 6, 4)) for p in prompts]
    assert fast == whole


# --------------------------------------------------------------------------------------------------
# §14 robustness: never an exception, never a hang

def test_bracket_soup_never_fails_and_is_quick():
    rng = random.Random(42)
    # the second alphabet has no `|` or `\`, which would make most prompts literal before parsing
    alphabets = ["[]()::||\\ab 1.5\n-", "[[]]((]):::ab 0.5 2"]
    started = time.perf_counter()
    for i in range(400):
        alphabet = alphabets[i % 2]
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for entry in schedule(text, 7):
            assert isinstance(entry[1], str)
        parse_prompt_attention(text)
        get_multicond_prompt_list([text])
    assert time.perf_counter() - started < 15


def test_deep_nesting_does_not_recurse_or_hang():
    started = time.perf_counter()
    deep = "[" * 300 + "x" + "]" * 300
    assert schedule(deep, 4) == [[4, deep]]
    edits = "[a:" * 120 + "x" + ":1]" * 120
    assert schedule(edits, 4) == [[1, "a"], [4, "x"]]
    assert parse_prompt_attention("(" * 2000 + "x") == [["x", pytest.approx(1.1 ** 2000, rel=1e-9)]]
    assert time.perf_counter() - started < 20


def test_long_realistic_prompt_is_fast():
    chunk = "masterpiece, (best quality:1.2), [red|blue] eyes, [day:night:0.4], <lora:x:0.5>, "
    prompt = chunk * 40  # ~3,000 characters
    started = time.perf_counter()
    res = schedule(prompt, 30)
    assert len(res) == 30 and res[0][1].startswith("masterpiece, (best quality:1.2), red eyes, day")
    assert time.perf_counter() - started < 5


def test_oversized_bracket_text_stays_literal(monkeypatch):
    monkeypatch.setattr(pp, "MAX_SCHEDULE_PARSE_CHARS", 10)
    pp._compile_schedule.cache_clear()
    try:
        assert schedule("[abcdef:ghijkl:2]", 4) == [[4, "[abcdef:ghijkl:2]"]]
        assert schedule("[a:b:2]", 4) == [[2, "a"], [4, "b"]]
        assert schedule("[no editing in this long text]", 4) == [[4, "[no editing in this long text]"]]
    finally:
        pp._compile_schedule.cache_clear()


# --------------------------------------------------------------------------------------------------
# §8 attention

B = ["BREAK", -1]

SPEC_ATTENTION = [
    ("a (red:1.3) car", [["a ", 1.0], ["red", 1.3], [" car", 1.0]]),
    ("((sunset))", [["sunset", 1.21]]),
    ("[[[fog]]]", [["fog", 0.7513148]]),
    ("(big (red) ball:1.5)", [["big ", 1.5], ["red", 1.65], [" ball", 1.5]]),
    ("((a) [b])", [["a", 1.21], [" ", 1.1], ["b", 1.0]]),
    ("( spaced :  0.8 )", [[" spaced ", 0.8]]),
    ("(u:+1.1)", [["u", 1.1]]),
    ("(a:.5)", [["a", 0.5]]),
    ("(a:5.)", [["a", 5.0]]),
    ("(a:1.5) and (b", [["a", 1.5], [" and ", 1.0], ["b", 1.1]]),
    ("\\(not\\) (yes)", [["(not) ", 1.0], ["yes", 1.1]]),
    ("\\(literal\\) \\[and\\] \\\\ back", [["(literal) [and] \\ back", 1.0]]),
    ("escape \\| p", [["escape | p", 1.0]]),
    ("escape | p", [["escape | p", 1.0]]),
    ("a:b", [["a:b", 1.0]]),
    ("(a:)", [["a:", 1.1]]),
    ("(weird:1.2.3)", [["weird:1.2.3", 1.1]]),
    ("(a:1.2)(b:1.2)", [["ab", 1.2]]),
    ("x BREAK y BREAK", [["x", 1.0], B, ["y", 1.0], B, ["", 1.0]]),
    ("a, (b:1.2) BREAK [c]", [["a, ", 1.0], ["b", 1.2], ["", 1.0], B, ["", 1.0], ["c", 0.9090909]]),
    ("Ünï (ï)", [["Ünï ", 1.0], ["ï", 1.1]]),
    # rules of §8.1 / §8.2
    ("a ) b", [["a ) b", 1.0]]),
    ("end ]", [["end ]", 1.0]]),
    ("[x:1.5]", [["x:1.5", 1 / 1.1]]),
    ("x:1.2)", [["x:1.2)", 1.0]]),
    ("(cloud:0.0)", [["cloud", 0.0]]),
    ("(a:-0.5)", [["a", -0.5]]),
    ("(a:1.2:1.3)", [["a:1.2", 1.3]]),
    ("breakfast BREAKING BREAK", [["breakfast BREAKING", 1.0], B, ["", 1.0]]),
    ("(a BREAK b)", [["a", 1.1], B, ["b", 1.1]]),
    ("(a:1..5)", [["a:1..5", 1.1]]),
    # our own
    ("", [["", 1.0]]),
    ("plain", [["plain", 1.0]]),
    ("[unclosed", [["unclosed", 1 / 1.1]]),
    ("((a)", [["a", 1.21]]),
    ("([a)]", [["a", 1.0]]),
    ("(a]", [["a]", 1.1]]),
    ("(a : 2 )", [["a ", 2.0]]),
    ("(a:\u0661.\u0665)", [["a", 1.5]]),  # Arabic-Indic digits parse like A1111's \d
    ("trailing \\", [["trailing ", 1.0]]),
    ("\\a\\b", [["ab", 1.0]]),
    # `\:` escapes nothing: the backslash is dropped and `:1.5)` is read afresh, as a weight (A1111)
    ("(a\\:1.5)", [["a", 1.5]]),
    ("((x):0)", [["x", 0.0]]),
    ("(x BREAK:-1)", [["x", -1.0], B, ["", -1.0]]),  # a marker never merges with text
    ("BREAK", [["", 1.0], B, ["", 1.0]]),
    ("aBREAK BREAKb", [["aBREAK BREAKb", 1.0]]),
    ("a\nBREAK\nb", [["a", 1.0], B, ["b", 1.0]]),
    ("[a:b:2]", [["a:b:2", 1 / 1.1]]),
]


def _approx_segments(segments):
    return [[text, pytest.approx(weight, rel=1e-6, abs=1e-12)] for text, weight in segments]


@pytest.mark.parametrize("text,expected", SPEC_ATTENTION)
def test_attention(text, expected):
    assert parse_prompt_attention(text) == _approx_segments(expected)


def test_attention_weights_are_plain_repeated_multiplication():
    assert parse_prompt_attention("((a))")[0][1] == 1.1 * 1.1
    assert parse_prompt_attention("[[a]]")[0][1] == (1 / 1.1) * (1 / 1.1)


# --------------------------------------------------------------------------------------------------
# §5 AND

SPEC_AND = [
    ("forest AND river:0.7", [("forest", 1.0), (" river", 0.7)]),
    ("castle :1.5 AND  moat : -0.3 AND sky", [("castle", 1.5), ("  moat", -0.3), (" sky", 1.0)]),
    ("ANDES mountains", [("ANDES mountains", 1.0)]),
    ("x AND", [("x", 1.0), ("", 1.0)]),
    ("cat:2 AND dog: 0.5e1", [("cat", 2.0), (" dog: 0.5e1", 1.0)]),
    ("p:0.5", [("p", 0.5)]),
    ("[a AND b:c:3]", [("[a", 1.0), (" b:c:3]", 1.0)]),
    # our own
    ("a and b And c ANDROID", [("a and b And c ANDROID", 1.0)]),
    ("a:+2", [("a", 2.0)]),
    ("a:.5 ", [("a", 0.5)]),
    ("a:2.", [("a", 2.0)]),
    ("a: 1.5.2", [("a: 1.5.2", 1.0)]),
    ("a:1:2", [("a:1", 2.0)]),
    ("  lead  ", [("  lead", 1.0)]),
    ("a\nAND\nb:3", [("a", 1.0), ("\nb", 3.0)]),
    ("", [("", 1.0)]),
    ("AND", [("", 1.0), ("", 1.0)]),
    ("(x:1.2)", [("(x:1.2)", 1.0)]),
]


@pytest.mark.parametrize("prompt,expected", SPEC_AND)
def test_and_split(prompt, expected):
    res_indexes, flat, _ = get_multicond_prompt_list([prompt])
    assert [(flat[i], w) for i, w in res_indexes[0]] == expected


def test_and_dedupes_texts_across_subprompts_and_prompts():
    res_indexes, flat, indexes = get_multicond_prompt_list(["a AND b:2", "b AND a", "a"])
    assert list(flat) == ["a", " b", "b", " a"]
    assert res_indexes == [[(0, 1.0), (1, 2.0)], [(2, 1.0), (3, 1.0)], [(0, 1.0)]]
    assert indexes == {"a": 0, " b": 1, "b": 2, " a": 3}


def test_multicond_flat_list_keeps_conditioning_facts():
    prompts = SdConditioning(["a AND b"], width=1024, height=768, is_negative_prompt=False)
    _, flat, _ = get_multicond_prompt_list(prompts)
    assert isinstance(flat, SdConditioning) and (flat.width, flat.height) == (1024, 768)


def test_long_and_prompt_is_linear():
    prompt = ("word " * 20000) + ":0.5"
    started = time.perf_counter()
    res_indexes, flat, _ = get_multicond_prompt_list([prompt])
    assert res_indexes == [[(0, 0.5)]] and flat[0].endswith("word")
    assert time.perf_counter() - started < 2


# --------------------------------------------------------------------------------------------------
# §13 conditioning containers with a fake text encoder

CHANNELS = 4


class FakeModel:
    """Encodes each text as a (77 * chunks) x CHANNELS tensor. Row k of text t holds code(t) + k/1000,
    so tests can see which text and which token a row came from. One call = one batch (padded to
    the longest text like a real encoder)."""

    def __init__(self, sdxl=False):
        self.calls = []
        self.codes = {}
        self.sdxl = sdxl

    def code(self, text):
        return self.codes.setdefault(text, float(len(self.codes) + 1))

    @staticmethod
    def chunks(text):
        return 1 + text.count("LONG")

    def get_learned_conditioning(self, texts):
        self.calls.append(list(texts))
        tokens = 77 * max(self.chunks(t) for t in texts)
        rows = torch.arange(tokens, dtype=torch.float32) / 1000
        cross = torch.stack([(self.code(t) + rows)[:, None].expand(tokens, CHANNELS) for t in texts])
        if not self.sdxl:
            return cross
        vector = torch.stack([torch.full((6,), self.code(t)) for t in texts])
        return {"crossattn": cross, "vector": vector}


def test_get_learned_conditioning_schedules_and_cache():
    model = FakeModel()
    res = get_learned_conditioning(model, ["[a:b:2]", "c", "[a:b:2]"], 4)
    assert model.calls == [["a", "b"], ["c"]]  # same prompt encoded once, one batch per prompt
    assert [entry.end_at_step for entry in res[0]] == [2, 4]
    assert res[0] is res[2]
    assert isinstance(res[0][0], ScheduledPromptConditioning)
    assert res[0][0].cond[0, 0].item() == model.code("a")
    assert res[0][1].cond[0, 0].item() == model.code("b")
    assert res[1][0].cond.shape == (77, CHANNELS)


def test_get_learned_conditioning_passes_sdconditioning_facts():
    seen = []

    class Model(FakeModel):
        def get_learned_conditioning(self, texts):
            seen.append((type(texts), texts.width, texts.height, texts.is_negative_prompt))
            return super().get_learned_conditioning(texts)

    get_learned_conditioning(Model(), SdConditioning(["x"], width=640, height=512, is_negative_prompt=True), 4)
    assert seen == [(SdConditioning, 640, 512, True)]


def test_reconstruct_cond_batch_switches_at_the_right_step():
    model = FakeModel()
    conds = get_learned_conditioning(model, ["[a:b:3]", "[x|y]"], 6)
    seen = []
    for step in range(6):
        batch = reconstruct_cond_batch(conds, step)
        assert batch.shape == (2, 77, CHANNELS)
        seen.append((batch[0, 0, 0].item(), batch[1, 0, 0].item()))
    a, b, x, y = (model.code(t) for t in "abxy")
    assert seen == [(a, x), (a, x), (a, y), (a, x), (b, y), (b, x)]


def test_reconstruct_cond_batch_pads_by_repeating_last_token():
    model = FakeModel()
    conds = get_learned_conditioning(model, ["short", "LONG text"], 10)
    batch = reconstruct_cond_batch(conds, 0)
    assert batch.shape == (2, 154, CHANNELS)
    short = batch[0]
    assert torch.equal(short[:77], conds[0][0].cond)
    assert torch.equal(short[77:], conds[0][0].cond[-1:].expand(77, CHANNELS))
    assert torch.equal(batch[1], conds[1][0].cond)


def test_reconstruct_with_a_counter_past_every_entry_uses_the_first_entry():
    conds = get_learned_conditioning(FakeModel(), ["[a:b:2]"], 4)
    assert torch.equal(reconstruct_cond_batch(conds, 99)[0], conds[0][0].cond)


def test_multicond_weights_and_schedules():
    model = FakeModel()
    c = get_multicond_learned_conditioning(model, ["[a:b:2] AND c:0.5", "c AND d:-1"], 4)
    assert isinstance(c, MulticondLearnedConditioning) and c.shape == (2,)
    assert all(isinstance(x, ComposableScheduledPromptConditioning) for row in c.batch for x in row)
    assert model.calls == [["a", "b"], [" c"], ["c"], [" d"]]

    conds_list, tensor = reconstruct_multicond_batch(c, 0)
    assert conds_list == [[(0, 1.0), (1, 0.5)], [(2, 1.0), (3, -1.0)]]
    assert tensor.shape == (4, 77, CHANNELS)
    assert [tensor[i, 0, 0].item() for i in range(4)] == [model.code(t) for t in ["a", " c", "c", " d"]]

    _, later = reconstruct_multicond_batch(c, 3)
    assert later[0, 0, 0].item() == model.code("b")
    assert torch.equal(later[1:], tensor[1:])


def test_multicond_pads_different_token_lengths():
    model = FakeModel()
    c = get_multicond_learned_conditioning(model, ["a AND LONG LONG b"], 4)
    _, tensor = reconstruct_multicond_batch(c, 0)
    assert tensor.shape == (2, 231, CHANNELS)
    assert torch.equal(tensor[0, 76:], tensor[0, 76:77].expand(231 - 76, CHANNELS))


def test_sdxl_dict_conds():
    model = FakeModel(sdxl=True)
    conds = get_learned_conditioning(model, ["[a:b:1]", "LONG c"], 4)
    assert set(conds[0][0].cond) == {"crossattn", "vector"}

    batch = reconstruct_cond_batch(conds, 0)
    assert batch.shape == (2, 154, CHANNELS)
    assert batch["crossattn"].shape == (2, 154, CHANNELS) and batch["vector"].shape == (2, 6)
    assert batch["vector"][:, 0].tolist() == [model.code("a"), model.code("LONG c")]
    assert reconstruct_cond_batch(conds, 2)["vector"][0, 0].item() == model.code("b")

    c = get_multicond_learned_conditioning(model, ["x AND y"], 4)
    conds_list, stacked = reconstruct_multicond_batch(c, 0)
    assert conds_list == [[(0, 1.0), (1, 1.0)]]
    assert stacked.shape == (2, 77, CHANNELS) and stacked["vector"].shape == (2, 6)


def test_conditioning_keeps_dtype():
    class HalfModel(FakeModel):
        def get_learned_conditioning(self, texts):
            return super().get_learned_conditioning(texts).half()

    conds = get_learned_conditioning(HalfModel(), ["a", "LONG b"], 4)
    assert reconstruct_cond_batch(conds, 0).dtype == torch.float16


# Issue 14 parity cases. A backslash escapes only ( ) [ ] \; before anything else it is dropped
# and ends the text run, so BREAK beside it is still BREAK and the space after it is BREAK's.
@pytest.mark.parametrize("text,expected", [
    ("\\]red house\\]{\\ BREAK  BREAK \\]1\\",
     [["]red house]{", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["]1", 1.0]]),
    ("3best quality\\]x\\\\ANDROID\\BREAK\\\\x", [["3best quality]x\\ANDROID", 1.0], ["BREAK", -1], ["\\x", 1.0]]),
    ("a\\BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("aBREAK b", [["aBREAK b", 1.0]]),
    ("(x\\q)", [["xq", 1.1]]),
])
def test_backslash_beside_break(text, expected):
    assert parse_prompt_attention(text) == _approx_segments(expected)


# A prompt-editing construct directly followed by an even number of unpaired `[ ] ( ) :` is read
# by A1111's grammar as stray characters (its Earley parse resolves the ambiguity that way).
@pytest.mark.parametrize("prompt,steps,expected", [
    ("[ANDred house:0.5])]\nmale\\[", 1, [[1, "[ANDred house:0.5])]\nmale\\["]]),
    ("[a:0.5])]", 4, [[4, "[a:0.5])]"]]),
    ("[a:0.5]))))", 4, [[4, "[a:0.5]))))"]]),
    ("[a:0.5])", 4, [[2, ")"], [4, "a)"]]),
    ("[a:0.5])))", 4, [[2, ")))"], [4, "a)))"]]),
    ("[a:0.5]()", 4, [[2, "()"], [4, "a()"]]),
    ("[a:0.5])) x [b:0.5]", 4, [[2, "[a:0.5])) x "], [4, "[a:0.5])) x b"]]),
    ("[[a:0.5]:0.5]))", 4, [[2, "[:0.5]))"], [4, "[a:0.5]))"]]),
    ("[a|b]))", 2, [[1, "a))"], [2, "b))"]]),
])
def test_edit_followed_by_strays_stays_text_as_in_a1111(prompt, steps, expected):
    assert get_learned_conditioning_prompt_schedules([prompt], steps) == [expected]

