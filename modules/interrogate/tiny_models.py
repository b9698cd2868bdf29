"""Tiny random-weight BLIP, CLIP and DeepBooru models in the folders interrogation reads (tests)."""
import os

import torch

BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "picture", "of", "cat", "dog", "on",
              "the", "red", "sofa", "grass", "sitting", "green", "field"]


def write_blip(folder: str, seed: int = 0) -> str:
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor, BlipTextConfig, BlipVisionConfig)
    os.makedirs(folder, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(BLIP_WORDS)}, do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
    text = BlipTextConfig(vocab_size=len(BLIP_WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37, encoder_hidden_size=32, bos_token_id=5, pad_token_id=0,
                          sep_token_id=3, eos_token_id=3, max_position_embeddings=64)
    vision = BlipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                              image_size=32, patch_size=8)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


def write_clip(folder: str, seed: int = 0) -> str:
    """No tokenizer files: the interrogator then uses the CLIP vocabulary open_clip ships."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    os.makedirs(folder, exist_ok=True)
    text = CLIPTextConfig(vocab_size=49408, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37, max_position_embeddings=77)
    vision = CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                              image_size=32, patch_size=8)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)) \
        .eval().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_deepbooru(path: str, tags: list[str], width: int = 4, seed: int = 0) -> str:
    from modules.interrogate.deepbooru_model import tiny_state_dict
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(tiny_state_dict(tags, width=width, seed=seed), path)
    return path
