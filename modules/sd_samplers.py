"""Sampler registry: A1111's display names and aliases mapped to our solvers.

Only samplers whose whole A1111 behaviour we reproduce are listed; an unknown name is an error
that lists the valid ones (A1111 silently substitutes another sampler; we do not).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplerData:
    name: str
    function: str                      # name of the solver in modules.k_sampling
    aliases: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)   # flags reported by GET /samplers
    params: tuple[str, ...] = ()       # "eta" or "churn": which extra parameters the solver takes


# generation.md §1.1 order
all_samplers = [
    SamplerData("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"],
                {"uses_ensd": True}, params=("eta",)),
    SamplerData("Euler", "sample_euler", ["k_euler"], {}, params=("churn",)),
]
all_samplers_map = {s.name: s for s in all_samplers}
samplers = all_samplers  # A1111 exposes both names


class SamplerNotFound(ValueError):
    pass


def find_sampler(name: str | None) -> SamplerData:
    """Exact name, then case-insensitive name, then alias (generation.md §1.1)."""
    if not name:
        return all_samplers_map["Euler"]
    if name in all_samplers_map:
        return all_samplers_map[name]
    lowered = name.lower()
    for sampler in all_samplers:
        if sampler.name.lower() == lowered or lowered in (a.lower() for a in sampler.aliases):
            return sampler
    valid = ", ".join(s.name for s in all_samplers)
    raise SamplerNotFound(f"Sampler '{name}' not found; valid names: {valid}")


def visible_sampler_names() -> list[str]:
    return [s.name for s in all_samplers]
