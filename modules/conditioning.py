"""Text conditioning: prompt text -> the tensors the UNet cross-attends to (prompt-syntax.md §8-§12).

Each text is split into weighted segments (attention syntax, `BREAK`), each segment is tokenised
without start/end tokens, and the tokens are packed into chunks of 75 (comma back-tracking,
textual-inversion embeddings that take k slots and never straddle two chunks). A chunk becomes 77
ids (start + 75 + end, padded); all chunks of one call are encoded as one batch, the token weights
are applied per the emphasis mode, and each text's chunks are joined along the token axis.

SD1/SD2 give a tensor [batch, 77·chunks, width]; SDXL gives {"crossattn": ..., "vector": pooled}.

Embedding vectors are written into the output of the encoder's token-embedding layer at placeholder
ids (0, as A1111 does); nothing is ever added to the shared tokenizers (offline.md §2.4).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import torch

CHUNK_TOKENS = 75
BOS, EOS = 49406, 49407
COMMA = 267  # `,</w>`
OPEN_CLIP_PAD = 0  # `!`
PLACEHOLDER = 0  # id fed at embedding slots; its token embedding is overwritten
EMPHASIS_MODES = ("None", "Ignore", "Original", "No norm")

# Encoder kinds, by how A1111 tokenises, pads and reads each of them (§9, §11):
#   sd1  CLIP-L of SD1:          end-token padding, clip skip with final layer norm
#   sd2  OpenCLIP-H of SD2:      zero padding, last layer of the 23-layer model (clip skip unused)
#   xl_l CLIP-L of SDXL:         end-token padding, penultimate layer, no final norm
#   xl_g OpenCLIP-bigG of SDXL:  zero padding, penultimate layer, pooled output
_OPEN_CLIP_KINDS = ("sd2", "xl_g")
_SDXL_VECTOR_KEYS = {"xl_l": "clip_l", "xl_g": "clip_g"}


def encoder_kinds(model) -> list[str]:
    """The kind of each of model.text_encoders, in order (the SDXL refiner has only bigG)."""
    if model.is_sdxl:
        return ["xl_l", "xl_g"] if len(model.text_encoders) == 2 else ["xl_g"]
    return ["sd2"] if model.is_sd2 else ["sd1"]


# ------------------------------------------------------------------------------------ chunking

@dataclass
class PromptChunk:
    """Up to 75 prompt tokens with their weights; fixes = (slot offset, embedding) per embedding."""
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, object]] = field(default_factory=list)

    def ids(self, open_clip: bool) -> list[int]:
        """77 ids: start, tokens, end-token padding; OpenCLIP pads with 0 after the first end token."""
        ids = [BOS] + self.tokens + [EOS] * (CHUNK_TOKENS + 1 - len(self.tokens))
        if open_clip:
            first_end = ids.index(EOS)
            ids[first_end + 1:] = [OPEN_CLIP_PAD] * (len(ids) - first_end - 1)
        return ids

    def padded_weights(self) -> list[float]:
        return [1.0] + self.weights + [1.0] * (CHUNK_TOKENS + 1 - len(self.weights))


def _clean(text: str, open_clip: bool) -> str:
    """A1111's text cleaning before BPE (offline.md §1.3); the HF tokenizer does neither step."""
    import ftfy
    text = ftfy.fix_text(text)
    if open_clip:  # OpenCLIP's own tokenizer also unescapes HTML twice and strips
        text = html.unescape(html.unescape(text)).strip()
    return text


def _segments(text: str, emphasis: str) -> list[list]:
    from modules.prompt_parser import parse_prompt_attention
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; choose from {', '.join(EMPHASIS_MODES)}")
    if emphasis == "None":  # brackets and BREAK are literal text
        return [[text, 1.0]]
    return parse_prompt_attention(text)


class _ChunkBuilder:
    def __init__(self, backtrack: int):
        self.backtrack = backtrack
        self.chunks: list[PromptChunk] = []
        self.current = PromptChunk()
        self.last_comma = -1  # position of the latest comma in the current chunk
        self.token_count = 0  # §9.3: 75 per closed non-final chunk + the final chunk's tokens

    def close(self, final: bool = False):
        self.token_count += len(self.current.tokens) if final else CHUNK_TOKENS
        self.chunks.append(self.current)
        self.current = PromptChunk()
        self.last_comma = -1

    def move_tail_after_comma(self):
        """Close the chunk right after its last comma; the tokens after it open the next chunk."""
        cut = self.last_comma + 1
        full = self.current
        tail = PromptChunk(full.tokens[cut:], full.weights[cut:],
                           [(offset - cut, emb) for offset, emb in full.fixes if offset >= cut])
        # (A1111 leaves moved embeddings' fixes behind, pointing at padding; we move them along)
        full.tokens, full.weights = full.tokens[:cut], full.weights[:cut]
        full.fixes = [(offset, emb) for offset, emb in full.fixes if offset < cut]
        self.close()
        self.current = tail

    def add(self, tokens: list[int], weight: float, embeddings, used: dict | None):
        position = 0
        while position < len(tokens):
            token = tokens[position]
            chunk = self.current
            if token == COMMA:
                self.last_comma = len(chunk.tokens)
            elif (self.backtrack and len(chunk.tokens) == CHUNK_TOKENS and self.last_comma != -1
                  and CHUNK_TOKENS - self.last_comma <= self.backtrack):
                self.move_tail_after_comma()
            if len(self.current.tokens) == CHUNK_TOKENS:
                self.close()  # (resets last_comma: a comma that opens a chunk is forgotten, as in A1111)

            embedding, name_length = (None, None)
            if embeddings is not None:
                embedding, name_length = embeddings.find_embedding_at_position(tokens, position)
            if embedding is None:
                self.current.tokens.append(token)
                self.current.weights.append(weight)
                position += 1
                continue

            slots = int(embedding.vectors)
            if name_length is None or name_length < 1:  # would never advance
                raise ValueError(f"embedding database matched '{embedding.name}' with {name_length} name tokens")
            if not 0 < slots <= CHUNK_TOKENS:
                raise ValueError(f"embedding '{embedding.name}' has {slots} vectors; a prompt chunk holds 1 to {CHUNK_TOKENS}")
            if len(self.current.tokens) + slots > CHUNK_TOKENS:
                self.close()  # an embedding never straddles two chunks
            chunk = self.current
            chunk.fixes.append((len(chunk.tokens), embedding))
            chunk.tokens += [PLACEHOLDER] * slots
            chunk.weights += [weight] * slots
            if used is not None:
                used[embedding.name] = embedding
            position += name_length


def tokenize_prompt(tokenizer, text: str, *, embeddings=None, emphasis: str = "Original",
                    comma_padding_backtrack: int = 20, open_clip: bool = False,
                    used_embeddings: dict | None = None) -> tuple[list[PromptChunk], int]:
    """One text -> (chunks, token count for the UI counter), per prompt-syntax.md §9.2-§9.3, §10."""
    segments = _segments(text, emphasis)
    is_break = [emphasis != "None" and seg_text == "BREAK" and weight == -1 for seg_text, weight in segments]
    texts = [_clean(seg_text, open_clip) for seg_text, _ in segments]
    tokenized = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]

    builder = _ChunkBuilder(comma_padding_backtrack)
    for tokens, (_, weight), marker in zip(tokenized, segments, is_break):
        if marker:
            builder.close()  # BREAK closes the chunk even when it is empty
        else:
            builder.add(tokens, weight, embeddings, used_embeddings)
    if builder.current.tokens or not builder.chunks:
        builder.close(final=True)
    return builder.chunks, builder.token_count


# ------------------------------------------------------------------------------------ encoding

def _embedding_vectors(embedding, kind: str, width: int) -> torch.Tensor:
    """The [k, width] vectors of an embedding for one encoder; a mismatch names the embedding."""
    vec = embedding.vec
    if kind in _SDXL_VECTOR_KEYS:
        key = _SDXL_VECTOR_KEYS[kind]
        if not isinstance(vec, dict) or key not in vec:
            raise ValueError(f"embedding '{embedding.name}' has no '{key}' vectors, which this SDXL model needs")
        vec = vec[key]
    elif isinstance(vec, dict):
        raise ValueError(f"embedding '{embedding.name}' is made for SDXL ({', '.join(vec)}); "
                         "the loaded model is not SDXL")
    slots = int(embedding.vectors)
    if vec.ndim != 2 or vec.shape[1] != width or vec.shape[0] != slots:
        raise ValueError(f"embedding '{embedding.name}': vectors of shape {tuple(vec.shape)} do not fit "
                         f"this text encoder (needs [{slots}, {width}])")
    return vec


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, emphasis: str) -> torch.Tensor:
    """Token weights [n, 77] applied to one chunk position's encoder output z [n, 77, C] (§12)."""
    if emphasis in ("None", "Ignore") or bool((weights == 1).all()):
        return z  # all-1 weights are the identity (and must not divide 0 by 0 when the mean is 0)
    weighted = z * weights.to(device=z.device, dtype=z.dtype).unsqueeze(-1)
    if emphasis == "No norm":
        return weighted
    if emphasis == "Original":  # one scalar over the whole batch of this chunk position
        return weighted * (z.mean() / weighted.mean())
    raise ValueError(f"unknown emphasis mode {emphasis!r}; choose from {', '.join(EMPHASIS_MODES)}")


def _hidden_layer(encoder, out, kind: str, clip_skip: int, sdxl_clip_l_skip: bool) -> torch.Tensor:
    """The hidden states A1111 uses for each encoder kind (§11)."""
    if kind == "sd2":
        return out.last_hidden_state  # our SD2 config already stops at the penultimate layer
    if kind == "xl_g" or (kind == "xl_l" and not sdxl_clip_l_skip):
        return out.hidden_states[-2]
    if not 1 <= clip_skip <= len(out.hidden_states):
        raise ValueError(f"clip skip {clip_skip} is out of range for a text encoder with "
                         f"{len(out.hidden_states) - 1} layers")
    if kind == "xl_l":
        return out.hidden_states[-clip_skip]  # setting sdxl_clip_l_skip: layer -N, no final norm
    if clip_skip == 1:
        return out.last_hidden_state
    final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return final_norm(out.hidden_states[-clip_skip])


def _run_encoder(encoder, kind: str, rows: list[PromptChunk], clip_skip: int, sdxl_clip_l_skip: bool):
    """Encode chunk rows in one batch: ([rows, 77, C] hidden states, pooled output or None)."""
    token_embedding = encoder.get_input_embeddings()
    width = token_embedding.embedding_dim
    device = token_embedding.weight.device
    ids = torch.tensor([chunk.ids(kind in _OPEN_CLIP_KINDS) for chunk in rows], dtype=torch.long, device=device)
    # (row, first slot, vectors); slot 0 of a chunk is the start token, hence the + 1
    inject = [(row, 1 + offset, _embedding_vectors(emb, kind, width))
              for row, chunk in enumerate(rows) for offset, emb in chunk.fixes]

    def write_vectors(_module, _inputs, output):
        for row, start, vec in inject:
            output[row, start:start + vec.shape[0]] = vec.to(device=output.device, dtype=output.dtype)
        return output

    handle = token_embedding.register_forward_hook(write_vectors) if inject else None
    try:
        out = encoder(ids, output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    hidden = _hidden_layer(encoder, out, kind, clip_skip, sdxl_clip_l_skip)
    return hidden, getattr(out, "text_embeds", None)


def _encode_kind(model, index: int, kind: str, per_text: list[list[PromptChunk]], count: int,
                 emphasis: str, clip_skip: int, sdxl_clip_l_skip: bool):
    """One encoder over all texts: ([texts, 77·count, C], pooled of the first chunk or None)."""
    texts = len(per_text)
    empty = PromptChunk()
    # position-major rows: row k·texts + t is chunk k of text t (an empty chunk where t has fewer)
    rows = [chunks[k] if k < len(chunks) else empty for k in range(count) for chunks in per_text]
    hidden, pooled = _run_encoder(model.text_encoders[index], kind, rows, clip_skip, sdxl_clip_l_skip)
    weights = torch.tensor([chunk.padded_weights() for chunk in rows], dtype=torch.float64)

    positions = [apply_emphasis(hidden[k * texts:(k + 1) * texts], weights[k * texts:(k + 1) * texts], emphasis)
                 for k in range(count)]
    joined = torch.cat(positions, dim=1)  # chunks joined along the token axis
    if pooled is not None:
        pooled = pooled[:texts]  # the first chunk position's pooled output (§9.4)
    return joined, pooled


@torch.no_grad()
def encode(model, texts: list[str], is_negative: bool = False, clip_skip: int | None = None, *,
           emphasis: str | None = None, comma_padding_backtrack: int | None = None,
           embeddings=None, used_embeddings: dict | None = None):
    """Conditioning of texts: [B, 77·chunks, C] (SD1/SD2) or {"crossattn", "vector"} (SDXL).

    Every text of the call is padded to the same chunk count. Settings not given come from
    shared.opts (emphasis, comma_padding_backtrack, CLIP_stop_at_last_layers, sdxl_clip_l_skip);
    embeddings defaults to model.embedding_db. Embeddings found are added to used_embeddings.
    """
    from modules import shared
    opts = shared.opts
    is_negative = is_negative or getattr(texts, "is_negative_prompt", False)
    texts = list(texts)
    if not texts:
        raise ValueError("encode() needs at least one text")
    emphasis = opts.emphasis if emphasis is None else emphasis
    backtrack = opts.comma_padding_backtrack if comma_padding_backtrack is None else comma_padding_backtrack
    clip_skip = opts.CLIP_stop_at_last_layers if clip_skip is None else clip_skip
    embeddings = getattr(model, "embedding_db", None) if embeddings is None else embeddings

    kinds = encoder_kinds(model)
    per_kind = []
    for index, kind in enumerate(kinds):
        per_kind.append([tokenize_prompt(model.tokenizers[index], text, embeddings=embeddings, emphasis=emphasis,
                                         comma_padding_backtrack=backtrack, open_clip=kind in _OPEN_CLIP_KINDS,
                                         used_embeddings=used_embeddings)[0]
                         for text in texts])
    # SDXL's two tokenisations can differ (HTML entities); one count keeps the outputs concatenable
    count = max(len(chunks) for per_text in per_kind for chunks in per_text)

    outputs = [_encode_kind(model, index, kind, per_kind[index], count, emphasis, clip_skip, opts.sdxl_clip_l_skip)
               for index, kind in enumerate(kinds)]
    if not model.is_sdxl:
        return outputs[0][0]

    crossattn = torch.cat([hidden for hidden, _ in outputs], dim=-1)
    pooled = outputs[-1][1]  # bigG is the last encoder
    if is_negative and all(text == "" for text in texts):
        # SDXL was trained with zeroed conditioning for an empty negative prompt
        crossattn, pooled = torch.zeros_like(crossattn), torch.zeros_like(pooled)
    return {"crossattn": crossattn, "vector": pooled}


# ------------------------------------------------------------------------------------ UI counter

def token_count(model, text: str, steps: int = 20, is_negative: bool = False) -> tuple[int, int]:
    """The prompt box counter `N/T` (§9.3): tokenises only, no encoder runs.

    Takes the text after styles and comments; extra-network tags are removed here and a positive
    prompt is split at `AND`, as A1111's counter does. Every scheduled variant is counted and the
    longest wins. model None (nothing loaded) counts with the plain CLIP tokenizer.
    """
    from modules import extra_networks, prompt_parser, shared
    text, _ = extra_networks.parse_prompt(text)
    if is_negative:
        texts = [text]
    else:
        _, texts, _ = prompt_parser.get_multicond_prompt_list([text])
    schedules = prompt_parser.get_learned_conditioning_prompt_schedules(texts, steps)
    variants = dict.fromkeys(variant for schedule in schedules for _, variant in schedule)

    if model is None:
        from modules.models.clip_tokenizer import load_clip_tokenizer
        tokenizer, open_clip, embeddings = load_clip_tokenizer(), False, None
    else:
        # the first tokenizer: CLIP-L for SD1 and SDXL (what A1111 counts with), OpenCLIP otherwise
        tokenizer = model.tokenizers[0]
        open_clip = encoder_kinds(model)[0] in _OPEN_CLIP_KINDS
        embeddings = getattr(model, "embedding_db", None)
    count = max(tokenize_prompt(tokenizer, variant, embeddings=embeddings, emphasis=shared.opts.emphasis,
                                comma_padding_backtrack=shared.opts.comma_padding_backtrack,
                                open_clip=open_clip)[1]
                for variant in variants)
    return count, CHUNK_TOKENS * max(1, math.ceil(count / CHUNK_TOKENS))


def encode_with_grad(model, texts: list[str], **kwargs):
    """encode() with autograd on: embedding training needs gradients to reach the vectors it
    injects (the text encoder's own weights stay frozen)."""
    return encode.__wrapped__(model, texts, **kwargs)
