"""Text conditioning: prompt text -> the tensors the UNet cross-attends to.

Prompts are tokenised without special tokens, cut into 75-token chunks, each padded to 77 with the
start and end tokens, encoded separately and concatenated along the token axis
(prompt-syntax.md §9). SD1 pads with the end token, OpenCLIP encoders (SD2, SDXL's second) with `!`.

SD1/SD2 give a tensor [batch, 77·chunks, width]; SDXL gives {"crossattn": ..., "vector": pooled}.
"""
import torch

CHUNK_TOKENS = 75
BOS, EOS = 49406, 49407


def _final_layer_norm(encoder):
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm


def token_chunks(tokenizer, text: str) -> list[list[int]]:
    ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    chunks = [ids[i:i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)]
    return chunks or [[]]


def padded_ids(chunk: list[int], pad_id: int) -> list[int]:
    return [BOS] + chunk + [EOS] + [pad_id] * (CHUNK_TOKENS - len(chunk))


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else EOS


def _encode_ids(model, index: int, ids: torch.Tensor, layer: str, clip_skip: int):
    """Hidden states of one encoder for a [n, 77] id batch.

    layer "last": clip skip picks hidden_states[-clip_skip], then the final layer norm (SD1, SD2).
    layer "penultimate": hidden_states[-2] without the final norm (both SDXL encoders).
    """
    encoder = model.text_encoders[index]
    device = next(encoder.parameters()).device
    out = encoder(ids.to(device), output_hidden_states=True)
    if layer == "penultimate":
        hidden = out.hidden_states[-2]
    elif clip_skip <= 1:
        hidden = out.last_hidden_state
    else:
        hidden = _final_layer_norm(encoder)(out.hidden_states[-clip_skip])
    pooled = getattr(out, "text_embeds", None)
    return hidden, pooled


def _ids_batch(tokenizer, texts: list[str], count: int = 1) -> tuple[torch.Tensor, int]:
    """[len(texts) * chunks, 77] ids, every text padded to the same chunk count (at least count)."""
    per_text = [token_chunks(tokenizer, text) for text in texts]
    count = max([count] + [len(chunks) for chunks in per_text])
    pad_id = _pad_id(tokenizer)
    rows = []
    for chunks in per_text:
        chunks = chunks + [[]] * (count - len(chunks))
        rows += [padded_ids(chunk, pad_id) for chunk in chunks]
    return torch.tensor(rows, dtype=torch.long), count


def _join_chunks(hidden: torch.Tensor, texts: int, count: int) -> torch.Tensor:
    # [texts*count, 77, D] -> [texts, count*77, D]
    return hidden.reshape(texts, count * hidden.shape[1], hidden.shape[2])


@torch.no_grad()
def encode(model, texts: list[str], is_negative: bool = False, clip_skip: int | None = None):
    from modules import shared
    if clip_skip is None:
        clip_skip = shared.opts.CLIP_stop_at_last_layers
    if not model.is_sdxl:
        ids, count = _ids_batch(model.tokenizers[0], texts)
        hidden, _ = _encode_ids(model, 0, ids, "last", clip_skip)
        return _join_chunks(hidden, len(texts), count)

    # both encoders share one vocabulary, so their chunk counts agree; max() keeps them aligned
    _, count = _ids_batch(model.tokenizers[0], texts)
    ids_g, count = _ids_batch(model.tokenizers[1], texts, count)
    ids_l, count = _ids_batch(model.tokenizers[0], texts, count)
    hidden_l, _ = _encode_ids(model, 0, ids_l, "penultimate", clip_skip)
    hidden_g, pooled = _encode_ids(model, 1, ids_g, "penultimate", clip_skip)
    crossattn = torch.cat([_join_chunks(hidden_l, len(texts), count),
                           _join_chunks(hidden_g, len(texts), count)], dim=-1)
    pooled = pooled.reshape(len(texts), count, -1)[:, 0]  # the first chunk's pooled output
    if is_negative and all(text == "" for text in texts):
        # SDXL was trained with zeroed conditioning for an empty negative prompt
        crossattn, pooled = torch.zeros_like(crossattn), torch.zeros_like(pooled)
    return {"crossattn": crossattn, "vector": pooled}
