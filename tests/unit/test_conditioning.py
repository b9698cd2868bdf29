"""The custom-words text encoder (prompt-syntax.md §9-§12) on tiny checkpoints, checked against
direct transformers calls on the ids the spec prescribes."""
import copy

import pytest
import torch

from modules import conditioning, shared
from modules.conditioning import BOS, CHUNK_TOKENS, COMMA, EOS, encode, token_count, tokenize_prompt
from modules.models.loader import load_checkpoint

A, CAT = 320, 2368  # `a</w>`, `cat</w>`
ASTRONAUT = "a photograph of an astronaut riding a horse"
ASTRONAUT_IDS = [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]  # offline.md §1.2


class TinyModel:
    """What encode() reads of an SdModel."""

    def __init__(self, loaded, embedding_db=None):
        self.text_encoders = loaded.text_encoders
        self.tokenizers = loaded.tokenizers
        self.is_sdxl = loaded.is_sdxl
        self.is_sd2 = loaded.family.startswith("sd2")
        self.embedding_db = embedding_db


@pytest.fixture(scope="module")
def models(data_dir):
    folder = data_dir / "models" / "Stable-diffusion"
    return {family: TinyModel(load_checkpoint(str(folder / f"tiny-{family}.safetensors")))
            for family in ("sd1", "sd2-v", "sdxl")}


class FakeEmbedding:
    def __init__(self, name, vec):
        self.name = name
        self.vec = vec
        self.vectors = (vec["clip_l"] if isinstance(vec, dict) else vec).shape[0]


class FakeDb:
    """The EmbeddingDatabase interface: longest tokenised name starting at tokens[offset]."""

    def __init__(self, tokenizer, *embeddings):
        self.names = {tuple(tokenizer(e.name, add_special_tokens=False)["input_ids"]): e for e in embeddings}

    def find_embedding_at_position(self, tokens, offset):
        found = [(len(ids), e) for ids, e in self.names.items() if tuple(tokens[offset:offset + len(ids)]) == ids]
        if not found:
            return None, None
        length, embedding = max(found, key=lambda item: item[0])
        return embedding, length


def chunk_ids(text, open_clip=False, **kwargs):
    tok = shared_tokenizer()
    chunks, _ = tokenize_prompt(tok, text, open_clip=open_clip, **kwargs)
    return [chunk.ids(open_clip) for chunk in chunks]


def shared_tokenizer():
    from modules.models.clip_tokenizer import load_clip_tokenizer
    return load_clip_tokenizer()


def padded(tokens, pad=EOS):
    return [BOS] + tokens + [EOS] + [pad] * (CHUNK_TOKENS - len(tokens))


def run(encoder, rows):
    return encoder(torch.tensor(rows), output_hidden_states=True)


def words(n, word="a"):
    return " ".join([word] * n)


# ----------------------------------------------------------------------------------- chunking

def test_plain_prompt_ids_pin_the_spec_values():
    assert chunk_ids(ASTRONAUT) == [padded(ASTRONAUT_IDS[1:-1])]
    assert chunk_ids(ASTRONAUT, open_clip=True) == [padded(ASTRONAUT_IDS[1:-1], pad=0)]
    assert chunk_ids("") == [[BOS] + [EOS] * 76]
    assert chunk_ids("", open_clip=True) == [[BOS, EOS] + [0] * 75]


def test_weights_per_token_follow_the_segments():
    chunks, _ = tokenize_prompt(shared_tokenizer(), "a (cat:1.5) [[[a]]]")
    weights = chunks[0].padded_weights()
    assert len(weights) == 77 and weights[0] == weights[4] == weights[-1] == 1.0
    assert weights[1:4] == [1.0, 1.5, pytest.approx(0.7513148)]


def test_break_and_76_tokens_make_two_chunks():
    assert chunk_ids("a cat BREAK a") == [padded([A, CAT]), padded([A])]
    assert chunk_ids("BREAK a") == [padded([]), padded([A])]  # a leading BREAK gives a pad chunk
    assert chunk_ids("a BREAK BREAK a") == [padded([A]), padded([]), padded([A])]
    assert chunk_ids(words(76)) == [padded([A] * 75), padded([A])]
    assert chunk_ids(words(75)) == [padded([A] * 75)]
    # BREAK inside a group still breaks (our rule, §8.1); with emphasis None it is a word
    assert chunk_ids("(a BREAK cat)") == [padded([A]), padded([CAT])]
    assert chunk_ids("a BREAK", emphasis="None") == [padded([A, 2568])]


def test_comma_backtracking_worked_example():
    # 80 tokens, the 61st is the last comma (§9.2)
    text = words(60) + "," + " " + words(19, "cat")
    tok = shared_tokenizer()
    moved, count = tokenize_prompt(tok, text, comma_padding_backtrack=20)
    assert [len(c.tokens) for c in moved] == [61, 19]
    assert moved[0].tokens == [A] * 60 + [COMMA] and moved[1].tokens == [CAT] * 19
    assert moved[0].ids(False)[62:] == [EOS] * 15 and count == 75 + 19
    kept, _ = tokenize_prompt(tok, text, comma_padding_backtrack=10)
    assert [c.tokens for c in kept] == [[A] * 60 + [COMMA] + [CAT] * 14, [CAT] * 5]
    off, _ = tokenize_prompt(tok, text, comma_padding_backtrack=0)
    assert [len(c.tokens) for c in off] == [75, 5]
    # the setting is the default
    with shared.opts.override({"comma_padding_backtrack": 10}):
        assert token_count(None, text) == (80, 150)
    assert token_count(None, text) == (94, 150)


def test_unicode_is_cleaned_like_a1111():
    # ftfy straightens curly quotes; OpenCLIP also unescapes HTML
    assert chunk_ids("\u201ccat\u201d") == chunk_ids('"cat"')
    assert chunk_ids("a &amp;amp; cat", open_clip=True) == chunk_ids("a & cat", open_clip=True)


# ----------------------------------------------------------------------------------- SD1

def test_plain_prompt_equals_encoder_output(models):
    m = models["sd1"]
    expected = run(m.text_encoders[0], [ASTRONAUT_IDS + [EOS] * 67]).last_hidden_state
    assert torch.equal(encode(m, [ASTRONAUT]), expected)
    assert torch.equal(encode(m, ["(a photograph:1.0) of an astronaut riding (a horse:1)"]), expected)


def test_emphasis_modes(models):
    # the tiny encoder's norms have random biases, so its output has a mean to restore, as real ones do
    m = models["sd1"]
    enc = m.text_encoders[0]
    z = run(enc, [padded([A, CAT, A])]).last_hidden_state
    w = torch.ones(1, 77, 1)
    w[0, 2] = 1.5
    text = "a (cat:1.5) a"
    assert torch.allclose(encode(m, [text], emphasis="No norm"), z * w)
    original = encode(m, [text], emphasis="Original")
    assert torch.allclose(original, z * w * (z.mean() / (z * w).mean()))
    assert torch.allclose(original.mean(), z.mean())
    assert not torch.allclose(original, z)
    assert torch.equal(encode(m, [text], emphasis="Ignore"), z)
    literal = run(enc, [padded(m.tokenizers[0](text, add_special_tokens=False)["input_ids"])]).last_hidden_state
    assert torch.equal(encode(m, [text], emphasis="None"), literal)
    with shared.opts.override({"emphasis": "No norm"}):  # the setting is the default
        assert torch.allclose(encode(m, [text]), z * w)


def test_original_mean_is_over_the_whole_batch():
    z = torch.arange(2 * 77 * 3, dtype=torch.float32).reshape(2, 77, 3) / 100
    w = torch.ones(2, 77)
    w[1, 5] = 2.0
    out = conditioning.apply_emphasis(z, w, "Original")
    weighted = z * w[..., None]
    assert torch.allclose(out, weighted * z.mean() / weighted.mean())
    assert torch.allclose(out.mean(), z.mean())
    assert not torch.allclose(out[0], z[0])  # text 0 is rescaled by text 1's weight too


def test_long_and_break_prompts_encode_per_chunk_and_pad_the_batch(models):
    m = models["sd1"]
    enc = m.text_encoders[0]
    out = encode(m, [words(76), "a cat BREAK a", "a"])
    assert out.shape == (3, 154, 32)
    rows = [padded([A] * 75), padded([A]), padded([A, CAT]), padded([A]), padded([A]), padded([])]
    hidden = run(enc, rows).last_hidden_state
    assert torch.allclose(out[0], torch.cat([hidden[0], hidden[1]]), atol=1e-5)
    assert torch.allclose(out[1], torch.cat([hidden[2], hidden[3]]), atol=1e-5)
    assert torch.allclose(out[2], torch.cat([hidden[4], hidden[5]]), atol=1e-5)  # empty chunk pads


def test_clip_skip(models):
    m = models["sd1"]
    enc = m.text_encoders[0]
    out = run(enc, [ASTRONAUT_IDS + [EOS] * 67])
    assert torch.equal(encode(m, [ASTRONAUT], clip_skip=2), enc.final_layer_norm(out.hidden_states[-2]))
    assert torch.equal(encode(m, [ASTRONAUT], clip_skip=1), out.last_hidden_state)
    with shared.opts.override({"CLIP_stop_at_last_layers": 2}):
        assert torch.equal(encode(m, [ASTRONAUT]), enc.final_layer_norm(out.hidden_states[-2]))
    with pytest.raises(ValueError, match="clip skip 9"):
        encode(m, [ASTRONAUT], clip_skip=9)  # the tiny encoder has 2 layers


# ----------------------------------------------------------------------------------- embeddings

def _reference_with_vectors(encoder, ids, slots, vec, layer=lambda out: out.last_hidden_state):
    """Encoder output with vec at the given positions, by writing vec into unused rows (ids 1..k)
    of a copy of the token-embedding table."""
    enc = copy.deepcopy(encoder)
    ids = list(ids)
    with torch.no_grad():
        for j, position in enumerate(slots):
            enc.get_input_embeddings().weight[1 + j] = vec[j]
            ids[position] = 1 + j
    return layer(run(enc, [ids]))


def test_embedding_vectors_replace_the_name_tokens(models):
    m = models["sd1"]
    tok = m.tokenizers[0]
    vec = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    emb = FakeEmbedding("mystyle", vec)
    db = FakeDb(tok, emb)
    chunks, count = tokenize_prompt(tok, "a (MyStyle:1.3) cat", embeddings=db)
    assert chunks[0].tokens == [A, 0, 0, 0, CAT] and count == 5
    assert chunks[0].weights == [1.0, 1.3, 1.3, 1.3, 1.0]
    assert chunks[0].fixes == [(1, emb)]

    used = {}
    out = encode(m, ["a mystyle cat"], embeddings=db, used_embeddings=used)
    assert used == {"mystyle": emb}
    expected = _reference_with_vectors(m.text_encoders[0], padded([A, 0, 0, 0, CAT]), [2, 3, 4], vec)
    assert torch.allclose(out, expected, atol=1e-5)
    m.embedding_db = db  # the default database is the model's
    try:
        assert torch.allclose(encode(m, ["a mystyle cat"]), expected, atol=1e-5)
        assert token_count(m, "a mystyle cat") == (5, 75)
    finally:
        m.embedding_db = None
    # without the database the word is ordinary text
    assert not torch.allclose(encode(m, ["a mystyle cat"]), expected, atol=1e-3)


def test_embedding_never_straddles_chunks_and_moves_with_comma_backtracking():
    tok = shared_tokenizer()
    db = FakeDb(tok, FakeEmbedding("mystyle", torch.zeros(3, 32)))
    chunks, count = tokenize_prompt(tok, words(73) + " mystyle", embeddings=db)
    assert [c.tokens for c in chunks] == [[A] * 73, [0, 0, 0]]
    assert [[offset for offset, _ in c.fixes] for c in chunks] == [[], [0]]
    assert count == 78
    # the tail after the last comma, embedding included, moves to the next chunk
    chunks, _ = tokenize_prompt(tok, words(60) + ", mystyle " + words(12, "cat"), embeddings=db)
    assert chunks[0].tokens == [A] * 60 + [COMMA] and chunks[0].fixes == []
    assert chunks[1].tokens[:4] == [0, 0, 0, CAT] and [o for o, _ in chunks[1].fixes] == [0]


def test_embedding_of_wrong_width_is_an_error_naming_it(models):
    m = models["sd1"]
    db = FakeDb(m.tokenizers[0], FakeEmbedding("widestyle", torch.zeros(2, 768)))
    with pytest.raises(ValueError, match="widestyle"):
        encode(m, ["a widestyle"], embeddings=db)
    xl = FakeDb(m.tokenizers[0], FakeEmbedding("xlstyle", {"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 48)}))
    with pytest.raises(ValueError, match="xlstyle"):
        encode(m, ["a xlstyle"], embeddings=xl)


# ----------------------------------------------------------------------------------- SD2

def test_sd2_pads_with_zero_and_ignores_clip_skip(models):
    m = models["sd2-v"]
    expected = run(m.text_encoders[0], [padded(ASTRONAUT_IDS[1:-1], pad=0)]).last_hidden_state
    assert torch.equal(encode(m, [ASTRONAUT]), expected)
    assert torch.equal(encode(m, [ASTRONAUT], clip_skip=2), expected)


# ----------------------------------------------------------------------------------- SDXL

def test_sdxl_both_encoders_pooled_and_zero_negative(models):
    m = models["sdxl"]
    enc_l, enc_g = m.text_encoders
    long_text = words(76)
    out = encode(m, [ASTRONAUT, long_text])
    assert out["crossattn"].shape == (2, 154, 32 + 48) and out["vector"].shape == (2, 48)

    ids = ASTRONAUT_IDS[1:-1]
    out_l = run(enc_l, [padded(ids), padded([])])
    out_g = run(enc_g, [padded(ids, pad=0), padded([], pad=0)])
    expected = torch.cat([torch.cat([out_l.hidden_states[-2][0], out_l.hidden_states[-2][1]]),
                          torch.cat([out_g.hidden_states[-2][0], out_g.hidden_states[-2][1]])], dim=-1)
    assert torch.allclose(out["crossattn"][0], expected, atol=1e-5)
    assert torch.allclose(out["vector"][0], out_g.text_embeds[0], atol=1e-5)
    # the pooled output of a long text is its first chunk's
    first = run(enc_g, [padded([A] * 75, pad=0)]).text_embeds[0]
    assert torch.allclose(out["vector"][1], first, atol=1e-5)

    negative = encode(m, ["", ""], is_negative=True)
    assert negative["crossattn"].shape == (2, 77, 80)
    assert not negative["crossattn"].any() and not negative["vector"].any()
    assert encode(m, [""])["crossattn"].any()  # only an empty *negative* is zeroed
    assert encode(m, ["", "a"], is_negative=True)["crossattn"].any()


def test_sdxl_clip_skip_applies_to_clip_l_only_with_the_setting(models):
    m = models["sdxl"]
    enc_l = m.text_encoders[0]
    out_l = run(enc_l, [ASTRONAUT_IDS + [EOS] * 67])
    default = encode(m, [ASTRONAUT], clip_skip=1)["crossattn"]
    assert torch.equal(encode(m, [ASTRONAUT], clip_skip=3)["crossattn"], default)
    assert torch.allclose(default[0, :, :32], out_l.hidden_states[-2][0], atol=1e-6)
    with shared.opts.override({"sdxl_clip_l_skip": True}):
        skipped = encode(m, [ASTRONAUT], clip_skip=1)["crossattn"]
    assert torch.allclose(skipped[0, :, :32], out_l.hidden_states[-1][0], atol=1e-6)  # no final norm
    assert torch.equal(skipped[0, :, 32:], default[0, :, 32:])


def test_sdxl_embedding_uses_clip_l_and_clip_g_vectors(models):
    m = models["sdxl"]
    gen = torch.Generator().manual_seed(2)
    vec = {"clip_l": torch.randn(2, 32, generator=gen), "clip_g": torch.randn(2, 48, generator=gen)}
    db = FakeDb(m.tokenizers[0], FakeEmbedding("mystyle", vec))
    out = encode(m, ["mystyle cat"], embeddings=db)
    penultimate = lambda o: o.hidden_states[-2]  # noqa: E731
    ref_l = _reference_with_vectors(m.text_encoders[0], padded([0, 0, CAT]), [1, 2], vec["clip_l"], penultimate)
    ref_g = _reference_with_vectors(m.text_encoders[1], padded([0, 0, CAT], pad=0), [1, 2], vec["clip_g"], penultimate)
    assert torch.allclose(out["crossattn"], torch.cat([ref_l, ref_g], dim=-1), atol=1e-5)
    pooled = _reference_with_vectors(m.text_encoders[1], padded([0, 0, CAT], pad=0), [1, 2], vec["clip_g"],
                                     lambda o: o.text_embeds)
    assert torch.allclose(out["vector"], pooled, atol=1e-5)
    with pytest.raises(ValueError, match="mystyle"):  # an SD1 embedding on SDXL
        encode(m, ["mystyle"], embeddings=FakeDb(m.tokenizers[0], FakeEmbedding("mystyle", torch.zeros(1, 32))))


# ----------------------------------------------------------------------------------- counter

@pytest.mark.parametrize("text, expected", [
    ("", (0, 75)),
    ("a cat", (2, 75)),
    (words(75), (75, 75)),
    (words(76), (76, 150)),
    ("a BREAK a", (76, 150)),          # a closed non-final chunk counts 75
    ("a BREAK", (75, 75)),
    ("[a:a cat cat cat:10]", (4, 75)),  # the longest scheduled variant
    ("[cat|a cat a]", (3, 75)),
    ("a AND a cat a", (3, 75)),         # AND splits; the longest sub-prompt counts
    ("<lora:thing:0.5> a cat", (2, 75)),
    ("(a:1.3) [cat]", (2, 75)),
])
def test_token_count(text, expected):
    assert token_count(None, text) == expected


def test_token_count_with_models_and_emphasis_none(models):
    for m in models.values():
        assert token_count(m, ASTRONAUT) == (8, 75)
    assert token_count(None, "a AND b c", is_negative=True) == (4, 75)  # negatives keep AND as text
    with shared.opts.override({"emphasis": "None"}):
        assert token_count(None, "(a:1.3)") == (7, 75)  # ( a : 1 . 3 ) are all tokens
