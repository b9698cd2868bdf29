"""Time the prompt-language front end on 1,000 generated prompts of realistic length.

Stages per prompt, as a job runs them: extra-network tags, AND split, schedules (first pass with 30
steps and a hires pass with 15), attention parsing of every distinct scheduled text. Prints numbers;
not a test.

    venv/bin/python bench/bench_prompt_parser.py [count]
"""

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules import extra_networks, prompt_parser  # noqa: E402

TAGS = (
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, blue eyes, "
    "detailed background, cinematic lighting, highly detailed, sharp focus, city street, night, "
    "rain, reflections, neon lights, umbrella, standing, from side, depth of field, bokeh, "
    "film grain, 35mm photograph, portrait, intricate, elegant, volumetric fog, golden hour, "
    "wide shot, mountains, lake, forest, snow, old man, red scarf, leather jacket, freckles"
).split(", ")


def make_prompt(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(20, 70)):
        tag = rng.choice(TAGS)
        r = rng.random()
        if r < 0.18:
            tag = f"({tag}:{rng.choice(['1.1', '1.2', '1.3', '0.8', '1.15'])})"
        elif r < 0.24:
            tag = "(" * rng.randint(1, 3) + tag + ")" * rng.randint(1, 3)
        elif r < 0.27:
            tag = f"[{tag}]"
        elif r < 0.30:
            tag = f"[{tag}:{rng.choice(TAGS)}:{rng.choice(['5', '10', '0.3', '0.6', '0.75'])}]"
        elif r < 0.32:
            tag = f"[{tag}|{rng.choice(TAGS)}]"
        elif r < 0.33:
            tag = f"<lora:style_{rng.randint(1, 9)}:{rng.choice(['0.6', '0.8', '1'])}>"
        elif r < 0.34:
            tag = "BREAK " + tag
        parts.append(tag)
    prompt = ", ".join(parts)
    if rng.random() < 0.05:
        prompt += f" AND {rng.choice(TAGS)}:{rng.choice(['0.5', '0.7'])}"
    return prompt


def run(prompts):
    timings = {"extra networks": 0.0, "AND split": 0.0, "schedules": 0.0, "attention": 0.0}
    per_prompt = []
    for prompt in prompts:
        t0 = time.perf_counter()
        text, _ = extra_networks.parse_prompt(prompt)
        t1 = time.perf_counter()
        _, flat, _ = prompt_parser.get_multicond_prompt_list([text])
        t2 = time.perf_counter()
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules(flat, 30)
        schedules += prompt_parser.get_learned_conditioning_prompt_schedules(flat, 30, 15)
        t3 = time.perf_counter()
        for scheduled_text in {entry[1] for sched in schedules for entry in sched}:
            prompt_parser.parse_prompt_attention(scheduled_text)
        t4 = time.perf_counter()
        for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            timings[key] += dt
        per_prompt.append(t4 - t0)
    return timings, per_prompt


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rng = random.Random(20240601)
    prompts = [make_prompt(rng) for _ in range(count)]
    lengths = [len(p) for p in prompts]
    with_square = sum("[" in p for p in prompts)

    prompt_parser._compile_schedule.cache_clear()
    timings, per_prompt = run(prompts)
    total = sum(per_prompt)

    print(f"prompts: {count}, length min/median/max {min(lengths)}/{int(statistics.median(lengths))}/"
          f"{max(lengths)} chars, {with_square} with [...]")
    for key, value in timings.items():
        print(f"  {key:15s} {value * 1000:9.1f} ms")
    print(f"total: {total:.3f} s ({total / count * 1000:.2f} ms per prompt, "
          f"median {statistics.median(per_prompt) * 1000:.2f} ms, max {max(per_prompt) * 1000:.1f} ms)")

    timings, per_prompt = run(prompts)
    print(f"second run (schedule parse cache warm): {sum(per_prompt):.3f} s")


if __name__ == "__main__":
    main()
