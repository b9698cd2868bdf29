"""Request values drawn from an OpenAPI schema, for the schema fuzz (tests/api/test_schema_fuzz.py).

A small, seeded generator over the JSON-schema subset FastAPI writes ($ref, anyOf, enum, type,
properties, required, items, additionalProperties, minimum/maximum). Most draws follow the schema
with values at and around its edges; some break it on purpose (a wrong type, a missing required
field, a body that is not an object) so that the validation paths are fed too. String fields draw
from a pool that holds the server's own names (models, samplers, upscalers, ...) and a valid image,
so that drawn requests get past the first lookups into the code behind them.
"""
import math
import random

INT_EDGES = (0, 1, -1, 2, 7, 64, 2 ** 31, -2 ** 31, 2 ** 63 - 1, 2 ** 63, -2 ** 63 - 1, 2 ** 64)
FLOAT_EDGES = (0.0, 0.5, 1.0, -1.0, 1e-9, 2.5, 1e308, -1e308, math.nan, math.inf)
PLAIN_STRINGS = ("", " ", "x", "None", "nan", "../../etc/passwd", "a (red:1.2) [cat:dog:0.5] BREAK <lora:x:1>",
                 "ünï©ødé ✓", "data:image/png;base64,", "not base64 !!!", "0", "1.5")


class SchemaValues:
    def __init__(self, spec: dict, strings: list[str], option_values: dict, seed: int):
        self.components = spec.get("components", {}).get("schemas", {})
        self.strings = list(PLAIN_STRINGS) + list(strings)
        self.option_values = option_values
        self.random = random.Random(seed)
        self.settings_body = False  # True while drawing bodies for POST /options

    # -- the schema subset ---------------------------------------------------------------------
    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def valid(self, schema: dict, depth: int = 0, name: str = ""):
        """A value of the schema (edges included), or of a near type where the schema allows anything."""
        schema = self.resolve(schema)
        r = self.random
        if "anyOf" in schema:
            return self.valid(r.choice(schema["anyOf"]), depth, name)
        if "enum" in schema:
            return r.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "null":
            return None
        if kind == "boolean":
            return r.random() < 0.5
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "string":
            return r.choice(self.strings)
        if kind == "array":
            if depth > 3:
                return []
            return [self.valid(schema.get("items", {}), depth + 1, name) for _ in range(r.randint(0, 3))]
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth, name)
        return self.anything(depth)

    def _integer(self, schema):
        r = self.random
        low, high = schema.get("minimum"), schema.get("maximum")
        candidates = list(INT_EDGES) + [r.randint(-100, 100)]
        if low is not None:
            candidates += [int(low), int(low) - 1]
        if high is not None:
            candidates += [int(high), int(high) + 1]
        return r.choice(candidates)

    def _number(self, schema):
        r = self.random
        candidates = list(FLOAT_EDGES) + [r.uniform(-10, 10)]
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if bound in schema:
                candidates += [float(schema[bound]), float(schema[bound]) + r.choice((-0.5, 0.0, 0.5))]
        return r.choice(candidates)

    def _object(self, schema, depth, name):
        r = self.random
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out = {}
        for key, sub in properties.items():
            if key in required or r.random() < 0.35:
                out[key] = self.valid(sub, depth + 1, key)
        extra = schema.get("additionalProperties")
        if not properties and extra is not False and depth < 4:
            if name == "override_settings" or (depth == 0 and self.settings_body):
                out.update(self.options())
            else:
                for _ in range(r.randint(0, 2)):
                    out[r.choice(self.strings) or "k"] = self.anything(depth + 1)
        return out

    # -- outside the schema ----------------------------------------------------------------------
    def anything(self, depth: int = 0):
        r = self.random
        pick = r.randrange(7 if depth < 3 else 5)
        if pick == 0:
            return None
        if pick == 1:
            return r.random() < 0.5
        if pick == 2:
            return r.choice(INT_EDGES)
        if pick == 3:
            return r.choice(FLOAT_EDGES)
        if pick == 4:
            return r.choice(self.strings)
        if pick == 5:
            return [self.anything(depth + 1) for _ in range(r.randint(0, 2))]
        return {r.choice(self.strings): self.anything(depth + 1) for _ in range(r.randint(0, 2))}

    def options(self) -> dict:
        """A few real setting keys with values of their own type or of a wrong one."""
        r = self.random
        out = {}
        for key in r.sample(sorted(self.option_values), min(3, len(self.option_values))):
            current = self.option_values[key]
            if r.random() < 0.6:
                out[key] = self._like(current)
            else:
                out[key] = self.anything(2)
        return out

    def _like(self, current):
        r = self.random
        if isinstance(current, bool):
            return r.random() < 0.5
        if isinstance(current, int):
            return r.choice(INT_EDGES + (current,))
        if isinstance(current, float):
            return r.choice(FLOAT_EDGES + (current,))
        if isinstance(current, str):
            return r.choice(self.strings + [current])
        if isinstance(current, list):
            return [r.choice(self.strings) for _ in range(r.randint(0, 2))]
        return self.anything(2)

    def body(self, schema: dict, settings_body: bool = False):
        """Mostly a body of the schema; sometimes one with a field broken or not an object at all."""
        r = self.random
        self.settings_body = settings_body
        value = self.valid(schema)
        roll = r.random()
        if roll < 0.1:
            return self.anything(1)
        if roll < 0.3 and isinstance(value, dict) and value:
            key = r.choice(sorted(value))
            if r.random() < 0.5:
                value[key] = self.anything(1)
            else:
                del value[key]
        return value
