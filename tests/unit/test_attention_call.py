"""The direct attention call (modules.models.attention_call): same results as diffusers' own forward,
and everything that forward honours (extra kwargs, another processor, a class patch) still works."""
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor

from modules.models import attention_call


def _layer():
    torch.manual_seed(0)
    return Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 5, 8, generator=g), torch.randn(2, 3, 6, generator=g)


def test_direct_call_gives_the_class_forwards_result_and_skips_the_signature_lookup(monkeypatch):
    layer = _layer()
    x, context = _inputs()
    with torch.no_grad():
        expected = Attention.forward(layer, x, encoder_hidden_states=context)
        assert attention_call.install(layer) == 1
        assert attention_call.install(layer) == 0  # once only
        looked_up = []
        monkeypatch.setattr("inspect.signature", lambda *a, **k: looked_up.append(a) or (_ for _ in ()).throw(
            AssertionError("signature looked up")))
        got = layer(x, encoder_hidden_states=context)
    assert not looked_up
    assert torch.equal(got, expected)


def test_extra_kwargs_another_processor_and_a_class_patch_still_work(monkeypatch):
    layer = _layer()
    attention_call.install(layer)
    x, context = _inputs()
    with torch.no_grad():
        plain = Attention.forward(layer, x, encoder_hidden_states=context)

        class Scaled(AttnProcessor):  # an extension's processor with its own keyword
            def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, scale=1.0):
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask) * scale

        layer.set_processor(Scaled())
        assert torch.allclose(layer(x, encoder_hidden_states=context, scale=2.0), plain * 2, atol=1e-6)
        assert torch.allclose(layer(x, encoder_hidden_states=context), plain, atol=1e-6)

        original = Attention.forward
        monkeypatch.setattr(Attention, "forward", lambda self, *a, **k: original(self, *a, **k) + 1)
        assert torch.allclose(layer(x, encoder_hidden_states=context), plain + 1, atol=1e-6)


def test_a_loaded_checkpoint_has_it_on_its_unet_and_vae(data_dir):
    from modules.models.loader import load_checkpoint
    model = load_checkpoint(data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors")
    for part in (model.unet, model.vae):
        layers = [m for m in part.modules() if isinstance(m, Attention)]
        assert layers and all("forward" in m.__dict__ for m in layers)
