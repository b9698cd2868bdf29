"""Seeds and noise (spec §3): generators, variation slerp, resize-from, ENSD, the NV Philox generator."""

import numpy as np
import pytest
import torch

from modules import rng
from modules.rng import ImageRNG, PhiloxGenerator, get_fixed_seed, get_image_seeds, randn, slerp

SHAPE = (4, 8, 8)


def cpu_randn(seed, shape, draws=1):
    """The `draws`-th tensor of a CPU torch generator seeded with `seed`."""
    g = torch.Generator("cpu").manual_seed(seed)
    for _ in range(draws):
        x = torch.randn(shape, generator=g)
    return x


# --- §3.1 / §3.2 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, "-1", None, "", "  ", "abc", "12x"])
def test_random_seed(value):
    seed = get_fixed_seed(value)
    assert isinstance(seed, int) and 0 <= seed < 4294967294


@pytest.mark.parametrize("value, expected", [(5, 5), ("42", 42), (" 7 ", 7), (2 ** 40, 2 ** 40), (0, 0)])
def test_fixed_seed(value, expected):
    assert get_fixed_seed(value) == expected


def test_image_seeds():
    assert get_image_seeds(10, 50, 0.0, 3) == ([10, 11, 12], [50, 51, 52])
    assert get_image_seeds(10, 50, 0.4, 3) == ([10, 10, 10], [50, 51, 52])


# --- generators ------------------------------------------------------------------------------------

def test_cpu_source_is_torch_cpu_generator():
    for seed in (0, 1234, 2 ** 33 + 5):
        assert torch.equal(randn(seed, SHAPE, source="CPU"), cpu_randn(seed, SHAPE))


def test_gpu_source_on_cpu_device_is_the_cpu_generator():
    assert torch.equal(randn(99, SHAPE, source="GPU", device="cpu"), cpu_randn(99, SHAPE))


def test_unknown_source_is_an_error():
    with pytest.raises(ValueError, match="NV"):
        randn(1, SHAPE, source="TPU")
    with pytest.raises(ValueError):
        ImageRNG(SHAPE, [1], source="cpu")


def test_nv_check_values():
    g = PhiloxGenerator(12345)
    np.testing.assert_allclose(
        g.randn((2, 3)).numpy(),
        [[0.5786413, -0.5247555, -0.2919037], [0.0140139, -2.1647296, 0.2789873]], atol=2e-7)
    np.testing.assert_allclose(g.randn((4,)).numpy(), [2.7012851, -0.7103896, -1.3754632, -1.5199847], atol=2e-7)
    np.testing.assert_allclose(PhiloxGenerator(1).randn((5,)).numpy(),
                               [-0.2962778, 2.6764481, -0.1408464, -0.8440951, 0.2905384], atol=2e-7)
    np.testing.assert_allclose(PhiloxGenerator(2 ** 32 + 7).randn((3,)).numpy(),
                               [-0.2827352, -1.0128043, 0.0095288], atol=2e-7)


def test_nv_offset_counts_tensors_not_numbers():
    g = PhiloxGenerator(5)
    first = g.randn((100,))
    second = g.randn((3,))
    assert g.offset == 2
    assert torch.equal(first[:3], PhiloxGenerator(5).randn((3,)))  # element i depends on i, not on the size
    assert not torch.equal(second, first[:3])


def test_nv_distribution():
    x = PhiloxGenerator(2024).randn((64, 64, 16))
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_nv_source_through_randn_and_image_rng():
    assert torch.equal(randn(12345, (2, 3), source="NV"), PhiloxGenerator(12345).randn((2, 3)))
    r = ImageRNG(SHAPE, [12345], source="NV")
    g = PhiloxGenerator(12345)
    assert torch.equal(r.first()[0], g.randn(SHAPE))
    assert torch.equal(r.next()[0], g.randn(SHAPE))


# --- ImageRNG --------------------------------------------------------------------------------------

def test_batch_image_k_equals_single_seed():
    seeds = [1000, 1001, 1002]
    batch = ImageRNG(SHAPE, seeds, source="CPU")
    first, second, third = batch.first(), batch.next(), batch.next()
    assert first.shape == (3, *SHAPE)
    for k, seed in enumerate(seeds):
        single = ImageRNG(SHAPE, [seed], source="CPU")
        assert torch.equal(first[k], single.first()[0])
        assert torch.equal(second[k], single.next()[0])
        assert torch.equal(first[k], cpu_randn(seed, SHAPE))
        assert torch.equal(third[k], cpu_randn(seed, SHAPE, draws=3))


def test_first_next_call_is_the_initial_noise():
    a, b = ImageRNG(SHAPE, [3], source="CPU"), ImageRNG(SHAPE, [3], source="CPU")
    assert torch.equal(a.next(), b.first())
    assert torch.equal(a.next(), b.next())


def test_noise_sampler_signature():
    r = ImageRNG(SHAPE, [8], source="CPU")
    r.first()
    assert torch.equal(r.noise_sampler(torch.tensor(2.0), torch.tensor(1.0))[0], cpu_randn(8, SHAPE, draws=2))


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_variation_strength_extremes(source):
    seed_noise = ImageRNG(SHAPE, [10], source=source).first()
    sub_noise = ImageRNG(SHAPE, [77], source=source).first()
    zero = ImageRNG(SHAPE, [10], subseeds=[77], subseed_strength=0.0, source=source).first()
    one = ImageRNG(SHAPE, [10], subseeds=[77], subseed_strength=1.0, source=source).first()
    assert torch.equal(zero, seed_noise)
    assert torch.allclose(one, sub_noise, atol=1e-5)
    half = ImageRNG(SHAPE, [10], subseeds=[77], subseed_strength=0.5, source=source).first()
    assert torch.allclose(half, slerp(0.5, seed_noise[0], sub_noise[0])[None])


def test_variation_keeps_generator_for_later_draws():
    # the subseed noise comes from a separate generator: later draws still follow the main seed
    r = ImageRNG(SHAPE, [10, 10], subseeds=[20, 21], subseed_strength=0.3, source="CPU")
    first = r.first()
    assert not torch.allclose(first[0], first[1])
    assert torch.equal(r.next()[1], cpu_randn(10, SHAPE, draws=2))


def test_variation_needs_subseeds():
    with pytest.raises(ValueError):
        ImageRNG(SHAPE, [1, 2], subseeds=[3], subseed_strength=0.5)


def test_slerp_exact_form():
    a, b = cpu_randn(1, SHAPE), cpu_randn(2, SHAPE)
    s = 0.3
    got = slerp(s, a, b)
    for c in range(SHAPE[0]):
        for w in range(SHAPE[2]):
            col_a, col_b = a[c, :, w].double(), b[c, :, w].double()  # normalised along the height axis
            omega = torch.acos(torch.dot(col_a / col_a.norm(), col_b / col_b.norm()))
            want = (torch.sin((1 - s) * omega) * col_a + torch.sin(s * omega) * col_b) / torch.sin(omega)
            assert torch.allclose(got[c, :, w].double(), want, atol=1e-5)


def test_slerp_parallel_fallback_has_reversed_weights():
    a = cpu_randn(1, SHAPE)
    b = a * 1.5 + 1e-4 * cpu_randn(2, SHAPE)  # nearly parallel columns: mean dot > 0.9995
    assert torch.allclose(slerp(0.2, a, b), a * 0.2 + b * 0.8)


def test_ensd_replaces_generators_after_initial_noise():
    r = ImageRNG(SHAPE, [500, 501], source="CPU", eta_noise_seed_delta=31337)
    first = r.first()
    assert torch.equal(first[1], cpu_randn(501, SHAPE))  # the initial noise is unaffected
    assert torch.equal(r.next()[1], cpu_randn(501 + 31337, SHAPE))
    assert torch.equal(r.next()[0], cpu_randn(500 + 31337, SHAPE, draws=2))
    plain = ImageRNG(SHAPE, [500], source="CPU")
    plain.first()
    assert torch.equal(plain.next()[0], cpu_randn(500, SHAPE, draws=2))


def test_resize_from_smaller_pastes_centred():
    # target 8×8 latent (64 px), noise drawn at 4×6 latent (32×48 px): pasted at rows 2..5, columns 1..6
    r = ImageRNG(SHAPE, [42], seed_resize_from_h=32, seed_resize_from_w=48, source="CPU")
    got = r.first()[0]
    small = cpu_randn(42, (4, 4, 6))
    base = cpu_randn(42, SHAPE)
    want = base.clone()
    want[:, 2:6, 1:7] = small
    assert torch.equal(got, want)
    # the image generator has drawn the full-size base, so the next draw is its second tensor
    assert torch.equal(r.next()[0], cpu_randn(42, SHAPE, draws=2))


def test_resize_from_larger_crops_centre():
    # noise 4×11×16 latent (88×128 px) onto 8×8: dy = −2 (floor of −3/2), dx = −4
    r = ImageRNG(SHAPE, [43], seed_resize_from_h=88, seed_resize_from_w=128, source="CPU")
    big = cpu_randn(43, (4, 11, 16))
    got = r.first()[0]
    assert torch.equal(got[:, 0:7, :], big[:, 2:9, 4:12])
    assert torch.equal(got[:, 7:, :], cpu_randn(43, SHAPE)[:, 7:, :])  # h = 11 − 4 = 7 rows pasted


def test_resize_from_with_variation():
    r = ImageRNG(SHAPE, [42], subseeds=[9], subseed_strength=0.5,
                 seed_resize_from_h=32, seed_resize_from_w=32, source="CPU")
    got = r.first()[0]
    mixed = slerp(0.5, cpu_randn(42, (4, 4, 4)), cpu_randn(9, (4, 4, 4)))
    assert torch.allclose(got[:, 2:6, 2:6], mixed)
    assert torch.equal(got[:, :2], cpu_randn(42, SHAPE)[:, :2])


def test_resize_from_needs_both_sizes():
    a = ImageRNG(SHAPE, [42], seed_resize_from_h=32, seed_resize_from_w=0, source="CPU").first()
    assert torch.equal(a[0], cpu_randn(42, SHAPE))


def test_module_exposes_sources():
    assert rng.SOURCES == ("GPU", "CPU", "NV")
