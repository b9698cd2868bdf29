"""Order names so that each comes after the ones it must follow, otherwise keeping the given order.

Used for callbacks (metadata.ini Before/After rules) and for scripts. Depth first in the given
order; a cycle is not an error: the names in it keep their given order."""
from __future__ import annotations


def order_after(names: list[str], must_follow: dict[str, set]) -> list[str]:
    """`must_follow[name]`: the names that have to come before `name` (missing: none)."""
    ordered, done, visiting = [], set(), set()

    def visit(name):
        if name in done or name in visiting:
            return
        visiting.add(name)
        for dependency in sorted(must_follow.get(name, ()), key=names.index):
            visit(dependency)
        visiting.discard(name)
        done.add(name)
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered
