"""Ranges numbers must keep so that a request is refused with a message instead of failing deep
inside torch (torch.Generator.manual_seed takes -2^63 .. 2^64-1; tensors index with int64)."""
import math

SEED_MIN, SEED_MAX = -2 ** 63, 2 ** 64 - 1   # what torch.Generator.manual_seed accepts
INT_MIN, INT_MAX = -2 ** 63, 2 ** 63 - 1     # every other integer field


def integer_problem(name: str, value: int, low: int = INT_MIN, high: int = INT_MAX) -> str | None:
    if low <= value <= high:
        return None
    return f"{name} must be between {low} and {high}, got {value}"


def float_problem(name: str, value: float) -> str | None:
    if math.isfinite(value):
        return None
    return f"{name} must be a finite number, got {value}"


def seed_problems(p, eta_noise_seed_delta: int) -> list[str]:
    """The seeds a job derives (seed + image index, + ENSD) must stay in manual_seed's range."""
    count = max(1, p.batch_size) * max(1, p.n_iter)
    problems = []
    for name, seed in (("seed", p.seed), ("subseed", p.subseed)):
        if seed is None or seed == -1 or not isinstance(seed, int):
            continue
        last = seed + count - 1 + (eta_noise_seed_delta if name == "seed" else 0)
        for value in (seed, last, seed + eta_noise_seed_delta if name == "seed" else seed):
            if not SEED_MIN <= value <= SEED_MAX:
                problems.append(f"{name} {seed} with {count} images (and eta_noise_seed_delta "
                                f"{eta_noise_seed_delta}) gives seeds outside {SEED_MIN} .. {SEED_MAX}")
                break
    return problems
