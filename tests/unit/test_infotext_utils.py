"""Infotext writing, parsing and image metadata (shared/spec/infotext.md)."""
import json
import random
import string

import pytest
from PIL import Image, PngImagePlugin

from modules import infotext_utils as iu
from modules.infotext_utils import build_infotext, parse_generation_parameters, quote

# Defaults the parser adds after the pairs when nothing in the text says otherwise (§5.5).
HIRES_DEFAULTS = {
    "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "", "Hires negative prompt": "",
}
INPAINT_DEFAULTS = {
    "Mask mode": "Inpaint masked", "Masked content": "original", "Inpaint area": "Whole picture",
    "Masked area padding": 32,
}
LATE_DEFAULTS = {
    "RNG": "GPU", "Schedule type": "Automatic", "Schedule max sigma": 0, "Schedule min sigma": 0,
    "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
}
ALL_DEFAULTS = {"Clip skip": "1", **HIRES_DEFAULTS, **INPAINT_DEFAULTS, **LATE_DEFAULTS,
                "Refiner switch by sampling steps": False}


def assert_same_ordered(actual: dict, expected: dict):
    assert actual == expected
    assert list(actual) == list(expected)


# --------------------------------------------------------------------------------------------
# §10 examples

def test_example_10_1_lora_clip_skip_ensd():
    text = (
        "cozy reading nook, warm lamp light, (rain on window:1.2), <lora:interiorStyle:0.6>\n"
        "Negative prompt: blurry, low contrast\n"
        "Steps: 24, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 2718281828, "
        "Size: 768x512, Model hash: 0123abcd45, Model: dreamhouse_v2, Clip skip: 2, ENSD: 31337, "
        'Lora hashes: "interiorStyle: 9f8e7d6c5b4a", Version: v1.10.1'
    )
    expected = json.loads("""
{"Steps": "24", "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": "6.5",
 "Seed": "2718281828", "Size-1": "768", "Size-2": "512", "Model hash": "0123abcd45",
 "Model": "dreamhouse_v2", "Clip skip": "2", "ENSD": "31337",
 "Lora hashes": "interiorStyle: 9f8e7d6c5b4a", "Version": "v1.10.1",
 "Prompt": "cozy reading nook, warm lamp light, (rain on window:1.2), <lora:interiorStyle:0.6>",
 "Negative prompt": "blurry, low contrast",
 "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
 "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint",
 "Hires prompt": "", "Hires negative prompt": "", "Mask mode": "Inpaint masked",
 "Masked content": "original", "Inpaint area": "Whole picture", "Masked area padding": 32,
 "RNG": "GPU", "Schedule max sigma": 0, "Schedule min sigma": 0, "Schedule rho": 0,
 "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable", "Emphasis": "Original",
 "Refiner switch by sampling steps": false}
""")
    assert_same_ordered(parse_generation_parameters(text), expected)


def test_example_10_2_hires_fix():
    text = (
        "a lighthouse on a cliff at dusk\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 77, Size: 640x448, "
        "Model hash: aa11bb22cc, Model: coastal_xl, Denoising strength: 0.45, Hires resize: 1280x896, "
        "Hires steps: 12, Hires upscaler: Latent (bicubic antialiased), Hires sampler: Euler, "
        'Hires negative prompt: "grainy,\\nover-sharpened", Version: v1.10.1'
    )
    expected = json.loads("""
{"Steps": "30", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "5", "Seed": "77",
 "Size-1": "640", "Size-2": "448", "Model hash": "aa11bb22cc", "Model": "coastal_xl",
 "Denoising strength": "0.45", "Hires resize-1": "1280", "Hires resize-2": "896",
 "Hires steps": "12", "Hires upscaler": "Latent (bicubic antialiased)", "Hires sampler": "Euler",
 "Hires negative prompt": "grainy,\\nover-sharpened", "Version": "v1.10.1",
 "Hires prompt": "", "Prompt": "a lighthouse on a cliff at dusk", "Negative prompt": "",
 "Clip skip": "1", "Hires schedule type": "Use same scheduler",
 "Hires checkpoint": "Use same checkpoint", "Mask mode": "Inpaint masked",
 "Masked content": "original", "Inpaint area": "Whole picture", "Masked area padding": 32,
 "RNG": "GPU", "Schedule max sigma": 0, "Schedule min sigma": 0, "Schedule rho": 0,
 "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
 "Refiner switch by sampling steps": false}
""")
    result = parse_generation_parameters(text)
    assert_same_ordered(result, expected)
    assert result["Hires negative prompt"] == "grainy,\nover-sharpened"


def test_example_10_3_inpainting():
    text = (
        "a bowl of ramen on a wooden table\n"
        "Negative prompt: text, watermark\n"
        "Steps: 28, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 7, Seed: 9001, Size: 512x640, "
        "Model hash: 5e5e5e5e5e, Model: foodmix, Denoising strength: 0.6, Mask blur: 8, "
        "Mask mode: Inpaint not masked, Masked content: latent noise, Inpaint area: Only masked, "
        "Masked area padding: 64, Noise multiplier: 1.05, Version: v1.10.1"
    )
    expected = json.loads("""
{"Steps": "28", "Sampler": "DPM++ SDE", "Schedule type": "Karras", "CFG scale": "7", "Seed": "9001",
 "Size-1": "512", "Size-2": "640", "Model hash": "5e5e5e5e5e", "Model": "foodmix",
 "Denoising strength": "0.6", "Mask blur": "8", "Mask mode": "Inpaint not masked",
 "Masked content": "latent noise", "Inpaint area": "Only masked", "Masked area padding": "64",
 "Noise multiplier": "1.05", "Version": "v1.10.1",
 "Prompt": "a bowl of ramen on a wooden table", "Negative prompt": "text, watermark",
 "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
 "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint",
 "Hires prompt": "", "Hires negative prompt": "", "RNG": "GPU", "Schedule max sigma": 0,
 "Schedule min sigma": 0, "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full",
 "FP8 weight": "Disable", "Refiner switch by sampling steps": false}
""")
    assert_same_ordered(parse_generation_parameters(text), expected)


def test_example_10_4_variation_seed_rng_tiling():
    text = (
        "isometric pixel city\n"
        "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 100, Size: 512x512, Variation seed: 4242, "
        "Variation seed strength: 0.25, Seed resize from: 384x384, RNG: NV, Tiling: True, "
        "Discard penultimate sigma: True, Version: v1.10.1"
    )
    expected = json.loads("""
{"Steps": "20", "Sampler": "Euler", "CFG scale": "7", "Seed": "100", "Size-1": "512", "Size-2": "512",
 "Variation seed": "4242", "Variation seed strength": "0.25",
 "Seed resize from-1": "384", "Seed resize from-2": "384", "RNG": "NV", "Tiling": "True",
 "Discard penultimate sigma": "True", "Version": "v1.10.1", "Prompt": "isometric pixel city",
 "Negative prompt": "", "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0,
 "Hires sampler": "Use same sampler", "Hires schedule type": "Use same scheduler",
 "Hires checkpoint": "Use same checkpoint", "Hires prompt": "", "Hires negative prompt": "",
 "Mask mode": "Inpaint masked", "Masked content": "original", "Inpaint area": "Whole picture",
 "Masked area padding": 32, "Schedule type": "Automatic", "Schedule max sigma": 0,
 "Schedule min sigma": 0, "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full",
 "FP8 weight": "Disable", "Refiner switch by sampling steps": false}
""")
    assert_same_ordered(parse_generation_parameters(text), expected)


def test_example_10_5_last_line_not_parameters():
    text = "watercolor fox in the snow\nstyle: loose, mood: calm"
    expected = json.loads("""
{"Prompt": "watercolor fox in the snow\\nstyle: loose, mood: calm", "Negative prompt": "",
 "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
 "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint",
 "Hires prompt": "", "Hires negative prompt": "", "Mask mode": "Inpaint masked",
 "Masked content": "original", "Inpaint area": "Whole picture", "Masked area padding": 32,
 "RNG": "GPU", "Schedule type": "Automatic", "Schedule max sigma": 0, "Schedule min sigma": 0,
 "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
 "Refiner switch by sampling steps": false}
""")
    assert_same_ordered(parse_generation_parameters(text), expected)


def test_example_10_5_converse_trap():
    result = parse_generation_parameters("watercolor fox\nstyle: loose, mood: calm, light: soft")
    assert result["Prompt"] == "watercolor fox"
    assert (result["style"], result["mood"], result["light"]) == ("loose", "calm", "soft")


def test_example_10_6_quoting_edge_cases():
    text = (
        "quote tests\n"
        'Steps: 10, Sampler: Euler, CFG scale: 7, Title: say "hi", Note: "not json\\q", Empty: , Size: 64x64'
    )
    pairs = {"Steps": "10", "Sampler": "Euler", "CFG scale": "7", "Title": 'say "hi"',
             "Note": '"not json\\q"', "Empty": "", "Size-1": "64", "Size-2": "64"}
    expected = {**pairs, "Prompt": "quote tests", "Negative prompt": "", **ALL_DEFAULTS}
    assert parse_generation_parameters(text) == expected
    assert list(parse_generation_parameters(text))[:len(pairs) + 2] == [*pairs, "Prompt", "Negative prompt"]


def test_example_10_7_old_version_hypernet_and_backcompat():
    text = (
        "knight portrait, [armor:robe:0.6]\n"
        "Steps: 40, Sampler: PLMS, CFG scale: 8, Seed: 12, Size: 512x768, Model hash: 1a2b3c4d, "
        "Hypernet: inkstyle, Version: v1.5.2"
    )
    expected = json.loads("""
{"Steps": "40", "Sampler": "PLMS", "CFG scale": "8", "Seed": "12", "Size-1": "512", "Size-2": "768",
 "Model hash": "1a2b3c4d", "Hypernet": "inkstyle", "Version": "v1.5.2",
 "Prompt": "knight portrait, [armor:robe:0.6]<hypernet:inkstyle:1.0>", "Negative prompt": "",
 "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
 "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint",
 "Hires prompt": "", "Hires negative prompt": "", "Mask mode": "Inpaint masked",
 "Masked content": "original", "Inpaint area": "Whole picture", "Masked area padding": 32,
 "RNG": "GPU", "Schedule type": "Automatic", "Schedule max sigma": 0, "Schedule min sigma": 0,
 "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
 "Emphasis": "Original", "Refiner switch by sampling steps": false,
 "Old prompt editing timelines": true, "Pad conds v0": true, "Downcast alphas_cumprod": true}
""")
    assert_same_ordered(parse_generation_parameters(text), expected)


# --------------------------------------------------------------------------------------------
# Writing

@pytest.mark.parametrize("value, written", [
    ("a, b", '"a, b"'),
    ("name: 1a2b", '"name: 1a2b"'),
    ("grainy,\nover-sharpened", '"grainy,\\nover-sharpened"'),
    ('say "hi", ok', '"say \\"hi\\", ok"'),
    ('say "hi"', 'say "hi"'),
    ("Ünï", "Ünï"),
    ("Ünï, ü", '"Ünï, ü"'),  # non-ASCII kept as is inside quotes
    ('"quoted"', '"\\"quoted\\""'),  # our rule: a leading quote is quoted
    ("plain text", "plain text"),
    (20, "20"),
    (7.0, "7.0"),
    (1e-05, "1e-05"),
    (True, "True"),
])
def test_quote_table(value, written):
    assert quote(value) == written


def test_fixed_keys_order():
    assert iu.FIXED_KEYS[:4] == ("Steps", "Sampler", "Schedule type", "CFG scale")
    assert len(iu.FIXED_KEYS) == 26 and iu.FIXED_KEYS[-1] == "Tiling"
    assert iu.FIXED_KEYS.index("Size") == 7 and iu.FIXED_KEYS.index("RNG") == 24


def test_order_generation_params():
    params = {"User": "bob", "Version": "v", "Lora hashes": "x", "Seed": 1, "Steps": 20,
              "Face restoration": None, "Emphasis": "No norm", "Schedule type": "Karras", "Sampler": "Euler"}
    ordered = iu.order_generation_params(params)
    assert list(ordered) == ["Steps", "Sampler", "Schedule type", "Seed", "Lora hashes", "Emphasis",
                             "Version", "User"]


def test_build_infotext_layout():
    params = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 5, "Size": "512x512",
              "Lora hashes": "a: 123456789abc, b: cba987654321", "Flag": "Flag", "Skip": None,
              "Version": iu.VERSION_STRING}
    text = build_infotext("a cat\non a mat", "ugly, blurry", params)
    assert text == (
        "a cat\non a mat\nNegative prompt: ugly, blurry\n"
        'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, '
        'Lora hashes: "a: 123456789abc, b: cba987654321", Flag, Version: v1.10.1-sdwebui-0.1.0'
    )
    # Only the whole text is stripped.
    assert build_infotext("  p  ", "", {"Steps": 1}) == "p  \nSteps: 1"
    assert build_infotext("", "", {"Steps": 1}) == "Steps: 1"
    # The flag is lost on read (§5.3).
    assert "Flag" not in parse_generation_parameters(text)


def test_version_string():
    assert iu.version_string() == iu.VERSION_STRING == "v1.10.1-sdwebui-0.1.0"
    # Our version does not parse as a version, so no back-compat flags are applied.
    assert iu.parse_infotext_version(iu.VERSION_STRING) is None
    text = build_infotext("[a:b:0.5]", "", {"Steps": 1, "Sampler": "DDIM", "CFG scale": 7,
                                             "Version": iu.VERSION_STRING})
    parsed = parse_generation_parameters(text)
    assert "Old prompt editing timelines" not in parsed and "Pad conds v0" not in parsed
    assert "Downcast alphas_cumprod" not in parsed


# --------------------------------------------------------------------------------------------
# Parsing details

def base_line(extra=""):
    return "Steps: 20, Sampler: Euler, CFG scale: 7" + extra


def test_negative_prompt_multiline_and_first_prefix_only():
    text = "p1\n  p2  \nNegative prompt:   n1\nNegative prompt: n2\n" + base_line()
    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == "p1\np2"
    assert parsed["Negative prompt"] == "n1\nNegative prompt: n2"


def test_duplicate_key_later_wins_and_garbage_skipped():
    parsed = parse_generation_parameters("p\n" + base_line(", ???, Steps: 30, x"))
    assert parsed["Steps"] == "30"


def test_backcompat_versions():
    def flags(version, sampler="Euler", prompt="x", extra=""):
        parsed = parse_generation_parameters(
            f"{prompt}\nSteps: 20, Sampler: {sampler}, CFG scale: 7{extra}, Version: {version}")
        keys = ("Old prompt editing timelines", "Pad conds v0", "Downcast alphas_cumprod")
        return {k for k in keys if parsed.get(k)} | (
            {"refiner"} if parsed["Refiner switch by sampling steps"] is True else set())

    assert flags("v1.5.2", "DDIM", "[a]") == {"Old prompt editing timelines", "Pad conds v0",
                                              "Downcast alphas_cumprod"}
    assert flags("v1.6.0") == {"Downcast alphas_cumprod"}
    assert flags("v1.7.0-224-gabc1234") == {"Downcast alphas_cumprod"}
    assert flags("v1.7.0-225-gabc1234") == set()
    assert flags("v1.7.0-RC-5-gabc") == {"Downcast alphas_cumprod"}
    assert flags("v1.7.1", extra=", Refiner: xl_refiner [abcd]") == {"refiner"}
    assert flags("v1.8.0", extra=", Refiner: xl_refiner [abcd]") == set()
    assert flags("v1.10.1-sdwebui-0.1.0", "DDIM", "[a]") == set()
    assert flags("garbage", "DDIM", "[a]") == set()
    assert "Downcast alphas_cumprod" not in parse_generation_parameters(
        "x\n" + base_line(", Version: v1.5.0"), auto_backcompat=False)


def test_skip_fields():
    parsed = parse_generation_parameters("x\n" + base_line(", Seed: 3"), skip_fields=["Seed", "RNG"])
    assert "Seed" not in parsed and "RNG" not in parsed


def test_fp8_cache_default():
    parsed = parse_generation_parameters("x\n" + base_line(", FP8 weight: Enable"))
    assert parsed["Cache FP16 weight for LoRA"] is False
    assert "Cache FP16 weight for LoRA" not in parse_generation_parameters("x\n" + base_line())


def test_hypernet_strength():
    parsed = parse_generation_parameters("x\n" + base_line(", Hypernet: ink, Hypernet strength: 0.5"))
    assert parsed["Prompt"] == "x<hypernet:ink:0.5>"


def test_old_hires_fix_conversion():
    parsed = parse_generation_parameters("x\n" + base_line(", Size: 1024x768, First pass size: 0x0"))
    assert (parsed["Size-1"], parsed["Size-2"]) == (640, 448)  # ceil(sqrt(1/3)*1024/64)*64 ...
    assert (parsed["Hires resize-1"], parsed["Hires resize-2"]) == (1024, 768)
    parsed = parse_generation_parameters("x\n" + base_line(", Size: 1024x768, First pass size: 512x384"))
    assert (parsed["Size-1"], parsed["Size-2"], parsed["Hires resize-1"]) == (512, 384, 1024)
    parsed = parse_generation_parameters("x\n" + base_line(", Size: 0x0, First pass size: 0x0"))
    assert (parsed["Size-1"], parsed["Hires resize-1"]) == (0, 0)  # nothing to compute from
    parsed = parse_generation_parameters("x\n" + base_line(", Size: 512x512, Hires resize: 1024x1024"),
                                         use_old_hires_fix_width_height=True)
    assert (parsed["Size-1"], parsed["Size-2"]) == (1024, 1024)


@pytest.mark.parametrize("prompt, uses", [
    ("plain text", False),
    ("a (red:1.3) car", True),
    ("((sunset))", True),
    ("(a:1.0)", False),
    ("()", False),
    ("\\(not\\) \\[really\\]", False),
    ("a ) b ]", False),
    ("((a) [b])", True),
    ("[b](c:1.1)", True),
    ("(weird:1.2.3)", True),
    ("[armor:robe:0.6]", True),
    ("x BREAK y", False),
    ("(cloud:0.0)", True),
    ("a:b", False),
])
def test_emphasis_detection(prompt, uses):
    assert iu.prompt_uses_emphasis(prompt) is uses
    parsed = parse_generation_parameters(prompt + "\n" + base_line())
    assert ("Emphasis" in parsed) is uses


def test_emphasis_from_negative_and_kept_when_present():
    parsed = parse_generation_parameters("x\nNegative prompt: (bad)\n" + base_line())
    assert parsed["Emphasis"] == "Original"
    parsed = parse_generation_parameters("(x)\n" + base_line(", Emphasis: No norm"))
    assert parsed["Emphasis"] == "No norm"


# --------------------------------------------------------------------------------------------
# Styles (§5.4)

class Style:
    def __init__(self, name, prompt, negative_prompt):
        self.name, self.prompt, self.negative_prompt = name, prompt, negative_prompt


STYLES = [
    Style("Cinematic", "cinematic still of {prompt}, shallow depth of field", ""),
    Style("Cold", "blue tint", "warm colors"),
    Style("Empty", "", ""),
]


def test_styles_extracted_in_application_order():
    text = ("cinematic still of harbor at night, shallow depth of field, blue tint\n"
            "Negative prompt: ugly, warm colors\n" + base_line())
    parsed = parse_generation_parameters(text, styles=STYLES)
    assert parsed["Prompt"] == "harbor at night"
    assert parsed["Negative prompt"] == "ugly"
    assert parsed["Styles array"] == ["Cinematic", "Cold"]


def test_styles_modes():
    text = "red car, blue tint\nNegative prompt: warm colors\n" + base_line()
    tuples = [("Cold", "blue tint", "warm colors")]
    assert parse_generation_parameters(text, styles=tuples)["Styles array"] == ["Cold"]
    discard = parse_generation_parameters(text, styles=tuples, infotext_styles="Discard")
    assert discard["Prompt"] == "red car" and "Styles array" not in discard
    ignore = parse_generation_parameters(text, styles=tuples, infotext_styles="Ignore")
    assert ignore["Prompt"] == "red car, blue tint" and "Styles array" not in ignore
    apply = parse_generation_parameters("plain\n" + base_line(), styles=tuples, infotext_styles="Apply")
    assert apply["Styles array"] == []
    assert "Styles array" not in parse_generation_parameters("plain\n" + base_line(), styles=tuples)


def test_style_needs_both_parts():
    text = "red car, blue tint\nNegative prompt: nothing\n" + base_line()
    parsed = parse_generation_parameters(text, styles=STYLES)
    assert parsed["Prompt"] == "red car, blue tint" and "Styles array" not in parsed


def test_hires_prompt_styles():
    text = ("red car, blue tint\nNegative prompt: warm colors\n"
            + base_line(', Hires prompt: "red car, blue tint"'))
    parsed = parse_generation_parameters(text, styles=STYLES)
    assert parsed["Hires prompt"] == "" and parsed["Prompt"] == "red car"
    text = ("red car, blue tint\nNegative prompt: warm colors\n"
            + base_line(', Hires prompt: "big red car, blue tint"'))
    parsed = parse_generation_parameters(text, styles=STYLES)
    assert parsed["Hires prompt"] == "big red car" and parsed["Styles array"] == ["Cold"]
    # Different styles in the hires prompt: nothing is extracted.
    text = "red car, blue tint\nNegative prompt: warm colors\n" + base_line(", Hires prompt: big car")
    parsed = parse_generation_parameters(text, styles=STYLES)
    assert parsed["Prompt"] == "red car, blue tint" and parsed["Hires prompt"] == "big car"
    assert "Styles array" not in parsed


# --------------------------------------------------------------------------------------------
# Round trip (§10.8)

PIECES = ["cat", "Ünïcödé", "日本語", "a, b", "key: value", 'say "hi"', "(red:1.2)", "[a:b:0.5]",
          "\\", "tab\there", "émoji 🎨", "x,y", "#1", "<lora:foo:0.5>", "BREAK", "'", "{", "/", "-"]


def random_text(rng, lines=True, allow_empty=True):
    if allow_empty and rng.random() < 0.1:
        return ""
    words = [rng.choice(PIECES) if rng.random() < 0.5 else
             "".join(rng.choice(string.ascii_letters + string.digits + ' ,:"') for _ in range(rng.randint(1, 8)))
             for _ in range(rng.randint(1, 6))]
    text = " ".join(words)
    if lines and rng.random() < 0.3:
        text += "\n" + random_text(rng, lines=False, allow_empty=False)
    if lines and rng.random() < 0.1:
        text += "\n\n" + random_text(rng, lines=False, allow_empty=False)
    # Surrounding whitespace of lines is not kept by the format, nor a line that starts like the
    # negative prompt.
    return "\n".join(line.strip() for line in text.split("\n")).replace("Negative prompt:", "Neg:")


def random_value(rng):
    kind = rng.random()
    if kind < 0.25:
        return rng.randint(0, 2**32)
    if kind < 0.45:
        return round(rng.uniform(0, 30), rng.randint(0, 4))
    if kind < 0.5:
        return rng.choice([True, False, 1e-05])
    text = random_text(rng, allow_empty=False)
    if rng.random() < 0.1:
        text = '"' + text
    return text.strip() or "x"


FIXED_SAMPLES = {
    "Steps": lambda r: r.randint(1, 150), "Sampler": lambda r: r.choice(["Euler a", "DPM++ 2M", "DDIM"]),
    "Schedule type": lambda r: r.choice(["Automatic", "Karras"]), "CFG scale": lambda r: r.choice([7, 7.0, 4.5]),
    "Image CFG scale": lambda r: 1.5, "Seed": lambda r: r.randint(0, 2**32),
    "Face restoration": lambda r: "CodeFormer", "Size": lambda r: f"{r.randint(1, 64) * 64}x{r.randint(1, 64) * 64}",
    "Model hash": lambda r: "%010x" % r.getrandbits(40), "Model": lambda r: random_value(r),
    "FP8 weight": lambda r: "Enable for SDXL", "Cache FP16 weight for LoRA": lambda r: r.choice([True, False]),
    "VAE hash": lambda r: "%010x" % r.getrandbits(40), "VAE": lambda r: "vae-ft-mse.safetensors",
    "Variation seed": lambda r: r.randint(0, 2**32), "Variation seed strength": lambda r: r.random(),
    "Seed resize from": lambda r: f"{r.randint(1, 20) * 64}x{r.randint(1, 20) * 64}",
    "Denoising strength": lambda r: round(r.random(), 2), "Conditional mask weight": lambda r: 0.5,
    "Clip skip": lambda r: r.randint(2, 4), "ENSD": lambda r: 31337, "Token merging ratio": lambda r: 0.3,
    "Token merging ratio hr": lambda r: 0.2, "Init image hash": lambda r: "%032x" % r.getrandbits(128),
    "RNG": lambda r: r.choice(["CPU", "NV"]), "Tiling": lambda r: True,
}
EXTRA_SAMPLES = {
    "Hires upscale": lambda r: 2, "Hires resize": lambda r: f"{r.randint(0, 20) * 64}x0",
    "Hires steps": lambda r: 10, "Hires upscaler": lambda r: "Latent (bicubic antialiased)",
    "Hires sampler": lambda r: "Euler", "Hires schedule type": lambda r: "Exponential",
    "Hires checkpoint": lambda r: "other [0123456789]", "Hires prompt": lambda r: random_text(r) or "hp",
    "Hires negative prompt": lambda r: random_text(r) or "hn",
    "Lora hashes": lambda r: "a: 123456789abc, b: cba987654321", "TI hashes": lambda r: "emb: 0123456789ab",
    "Emphasis": lambda r: "No norm", "Eta": lambda r: 0.67, "Mask blur": lambda r: 4,
    "Mask mode": lambda r: "Inpaint not masked", "Masked content": lambda r: "latent noise",
    "Inpaint area": lambda r: "Only masked", "Masked area padding": lambda r: 64,
    "ControlNet 0": lambda r: "Module: canny, Model: cn [abc], Weight: 1.0",
    "Refiner": lambda r: "xl_refiner [abcdef1234]", "Refiner switch at": lambda r: 0.8,
    "Script": lambda r: "X/Y/Z plot", "X Values": lambda r: '"1, 2", 3',
}


def random_params(rng):
    params = {}
    for key in ("Steps", "Sampler", "CFG scale", "Seed", "Size"):
        params[key] = FIXED_SAMPLES[key](rng)
    for key, make in rng.sample(list(FIXED_SAMPLES.items()), rng.randint(0, len(FIXED_SAMPLES))):
        params[key] = make(rng)
    for key, make in rng.sample(list(EXTRA_SAMPLES.items()), rng.randint(0, len(EXTRA_SAMPLES))):
        params[key] = make(rng)
    for _ in range(rng.randint(0, 3)):  # arbitrary extension keys
        key = rng.choice(["Ext", "My ext/param", "ADetailer model", "Überschlüssel", "x_y-z"]) + str(rng.randint(0, 99))
        params[key] = random_value(rng)
    params["Version"] = iu.VERSION_STRING
    if rng.random() < 0.3:
        params["User"] = random_value(rng)
    if rng.random() < 0.2:
        params["Nothing"] = None
    return params


def expected_pairs(params, prompt, negative):
    """What the parser must give back for the written keys (§5.3, §10.8)."""
    expected = {}
    for key, value in params.items():
        if value is None:
            continue
        text = str(value)
        size = iu._SIZE_RE.fullmatch(text)
        if size:
            expected[f"{key}-1"], expected[f"{key}-2"] = size.groups()
        else:
            expected[key] = text
    # §5.4: hires prompts equal to the main ones are blanked.
    if "Hires prompt" in expected or "Hires negative prompt" in expected:
        if expected.get("Hires prompt", prompt) == prompt:
            expected["Hires prompt"] = ""
        if expected.get("Hires negative prompt", negative) == negative:
            expected["Hires negative prompt"] = ""
    return expected


def test_round_trip_many_parameter_sets():
    rng = random.Random(1234)
    for _ in range(600):
        prompt, negative = random_text(rng), random_text(rng)
        params = random_params(rng)
        text = build_infotext(prompt, negative, params)
        parsed = parse_generation_parameters(text)

        assert parsed["Prompt"] == prompt, text
        assert parsed["Negative prompt"] == negative, text
        expected = expected_pairs(params, prompt, negative)
        for key, value in expected.items():
            assert parsed[key] == value, (key, text)
        extra = set(parsed) - set(expected) - {"Prompt", "Negative prompt"}
        allowed = set(ALL_DEFAULTS) | {"Emphasis", "Cache FP16 weight for LoRA"}
        assert extra <= allowed, (extra - allowed, text)


def test_round_trip_pair_order_follows_writer():
    params = {"Version": iu.VERSION_STRING, "Zeta": 1, "Seed": 2, "Steps": 3, "Sampler": "Euler",
              "Alpha": "a, b", "CFG scale": 7}
    parsed = parse_generation_parameters(build_infotext("p", "", params))
    assert list(parsed)[:7] == ["Steps", "Sampler", "CFG scale", "Seed", "Zeta", "Alpha", "Version"]


# --------------------------------------------------------------------------------------------
# Image metadata (§1, §9)

INFOTEXT = build_infotext("a ✓ cat, \"quoted\"\nline two", "日本語, bad",
                          {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 1, "Size": "16x16",
                           "Version": iu.VERSION_STRING})
LATIN1_INFOTEXT = "café\nSteps: 20, Sampler: Euler, CFG scale: 7"


def save_and_open(tmp_path, name, **save_args):
    path = tmp_path / name
    Image.new("RGB", (16, 16), "red").save(path, **save_args)
    return Image.open(path)


@pytest.mark.parametrize("text, chunk", [(LATIN1_INFOTEXT, b"tEXt"), (INFOTEXT, b"iTXt")])
def test_png_round_trip(tmp_path, text, chunk):
    image = save_and_open(tmp_path, "a.png", pnginfo=iu.pnginfo_for(text))
    assert chunk + b"parameters" in (tmp_path / "a.png").read_bytes()
    geninfo, items = iu.read_info_from_image(image)
    assert geninfo == text and type(geninfo) is str
    assert items == {}
    assert parse_generation_parameters(geninfo)["Steps"] == "20"


def test_png_keeps_other_chunks_and_reads_ztxt(tmp_path):
    existing = {"parameters": "old", "Software": "other tool", "dpi": (72, 72)}
    image = save_and_open(tmp_path, "a.png", pnginfo=iu.pnginfo_for(INFOTEXT, existing=existing))
    assert iu.read_info_from_image(image) == (INFOTEXT, {"Software": "other tool"})

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", LATIN1_INFOTEXT, zip=True)
    image = save_and_open(tmp_path, "z.png", pnginfo=info)
    assert b"zTXt" in (tmp_path / "z.png").read_bytes()
    assert iu.read_info_from_image(image)[0] == LATIN1_INFOTEXT


def test_png_extras_chunk(tmp_path):
    info = iu.pnginfo_for("Postprocess upscale by: 4", key="extras", existing={"parameters": INFOTEXT})
    image = save_and_open(tmp_path, "e.png", pnginfo=info)
    assert iu.read_info_from_image(image) == (INFOTEXT, {"extras": "Postprocess upscale by: 4"})


@pytest.mark.parametrize("fmt, name", [("JPEG", "a.jpg"), ("WEBP", "a.webp")])
def test_exif_round_trip(tmp_path, fmt, name):
    image = save_and_open(tmp_path, name, format=fmt, exif=iu.exif_bytes_for(INFOTEXT))
    geninfo, items = iu.read_info_from_image(image)
    assert geninfo == INFOTEXT
    assert "exif" not in items
    comment = image.getexif().get_ifd(iu.EXIF_IFD_POINTER)[iu.EXIF_USER_COMMENT]
    assert comment == iu.exif_user_comment_bytes(INFOTEXT)


def test_exif_user_comment_bytes():
    assert iu.exif_user_comment_bytes("Aü") == b"UNICODE\0\x00A\x00\xfc"


@pytest.mark.parametrize("raw, text", [
    (b"UNICODE\0" + "héllo ✓".encode("utf-16-be"), "héllo ✓"),
    (b"UNICODE\0" + "bom".encode("utf-16"), "bom"),
    (b"ASCII\0\0\0plain", "plain"),
    (b"\0" * 8 + "undefined ü".encode(), "undefined ü"),
    (b"JIS\0\0\0\0\0" + "日本".encode("shift_jis"), "日本"),
    ("no prefix ü".encode() + b"\xff", "no prefix ü"),
    ("already text", "already text"),
])
def test_decode_user_comment(raw, text):
    assert iu.decode_user_comment(raw) == text


def exif_with_raw_comment(comment: bytes) -> bytes:
    """Our EXIF layout with an arbitrary UserComment payload."""
    block = iu.exif_bytes_for("")
    return block[:-8].replace(b"\x00\x00\x00\x08\x00\x00\x00\x2c", len(comment).to_bytes(4, "big") + b"\x00\x00\x00\x2c") + comment


def test_exif_wins_over_png_chunk_only_when_non_empty(tmp_path):
    info = iu.pnginfo_for("png text")
    image = save_and_open(tmp_path, "b.png", pnginfo=info, exif=iu.exif_bytes_for("exif text"))
    assert iu.read_info_from_image(image)[0] == "exif text"
    image = save_and_open(tmp_path, "c.png", pnginfo=info, exif=iu.exif_bytes_for(""))
    assert iu.read_info_from_image(image)[0] == "png text"


def test_exif_ascii_and_unknown_prefix(tmp_path):
    raw = exif_with_raw_comment(b"ASCII\0\0\0ascii text")
    image = save_and_open(tmp_path, "a.jpg", exif=raw)
    assert iu.read_info_from_image(image)[0] == "ascii text"
    image = save_and_open(tmp_path, "b.jpg", exif=exif_with_raw_comment("raw utf8 ü".encode()))
    assert iu.read_info_from_image(image)[0] == "raw utf8 ü"


def test_corrupt_exif_is_ignored():
    image = Image.new("RGB", (4, 4))
    image.info["exif"] = b"Exif\0\0garbage"
    image.info["parameters"] = "from png"
    assert iu.read_info_from_image(image) == ("from png", {})


def test_gif_comment(tmp_path):
    image = save_and_open(tmp_path, "a.gif", comment=LATIN1_INFOTEXT.encode())
    geninfo, items = iu.read_info_from_image(image)
    assert geninfo == LATIN1_INFOTEXT
    assert "comment" not in items and "duration" not in items


def test_no_metadata():
    assert iu.read_info_from_image(Image.new("RGB", (4, 4))) == (None, {})


def novelai_png(tmp_path, comment, size=(832, 1216)):
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "AI generated image")
    info.add_text("Description", "1girl, lighthouse keeper")
    info.add_text("Software", "NovelAI")
    info.add_text("Comment", comment)
    path = tmp_path / "nai.png"
    Image.new("RGB", size).save(path, pnginfo=info)
    return Image.open(path)


def test_novelai_conversion(tmp_path):
    comment = '{"steps": 28, "sampler": "k_euler", "scale": 11, "seed": 5150, "uc": "lowres"}'
    geninfo, items = iu.read_info_from_image(novelai_png(tmp_path, comment))
    assert geninfo == (
        "1girl, lighthouse keeper\n"
        "Negative prompt: lowres\n"
        "Steps: 28, Sampler: Euler, CFG scale: 11, Seed: 5150, Size: 832x1216, Clip skip: 2, ENSD: 31337"
    )
    assert items["Software"] == "NovelAI" and items["Comment"] == comment
    parsed = parse_generation_parameters(geninfo)
    assert (parsed["Sampler"], parsed["Size-1"], parsed["ENSD"]) == ("Euler", "832", "31337")


@pytest.mark.parametrize("sampler, expected", [
    ("k_euler_ancestral", "Euler a"), ("K_DPMPP_2M", "DPM++ 2M"), ("ddim", "DDIM"),
    ("Euler a", "Euler a"), ("nai_smea_dyn", "Euler a"),
])
def test_novelai_sampler_lookup(tmp_path, sampler, expected):
    comment = json.dumps({"steps": 28, "sampler": sampler, "scale": 5.5, "seed": 1, "uc": "x"})
    geninfo, _ = iu.read_info_from_image(novelai_png(tmp_path, comment, size=(64, 64)))
    assert f"Sampler: {expected}," in geninfo


def test_novelai_bad_comment_leaves_no_infotext(tmp_path):
    assert iu.read_info_from_image(novelai_png(tmp_path, "not json", size=(8, 8)))[0] is None
    assert iu.read_info_from_image(novelai_png(tmp_path, '{"steps": 1}', size=(8, 8)))[0] is None
