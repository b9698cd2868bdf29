"""Interleaved A/B of the prompt-language front end: another version of modules/prompt_parser.py
(e.g. `git show REV:modules/prompt_parser.py > /tmp/old.py`) against the current one on the
1,000 prompts of bench_prompt_parser.py, cold caches each round; checks both give the same results.

    venv/bin/python bench/bench_prompt_parser_ab.py /tmp/old.py
"""
import sys, random, time, importlib.util
sys.path.insert(0, "."); sys.path.insert(0, "bench")
from modules import prompt_parser as new
spec = importlib.util.spec_from_file_location("pp_old", sys.argv[1])
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
import bench_prompt_parser as B
rng = random.Random(20240601)
prompts = [B.make_prompt(rng) for _ in range(1000)]
def run(mod):
    B.prompt_parser = mod
    mod._compile_schedule.cache_clear(); mod._parse_span.cache_clear()
    t = time.perf_counter(); B.run(prompts); return time.perf_counter() - t
def results(mod):
    out = []
    for p in prompts:
        _, flat, _ = mod.get_multicond_prompt_list([p])
        s = mod.get_learned_conditioning_prompt_schedules(flat, 30) + mod.get_learned_conditioning_prompt_schedules(flat, 30, 15)
        out.append((s, [mod.parse_prompt_attention(e[1]) for sc in s for e in sc]))
    return out
print("same results:", results(old) == results(new))
ratios = []
for r in range(3):
    a = run(old); b = run(new); ratios.append(b / a)
    print(f"round {r}: other {a/len(prompts)*1000:.2f} ms/prompt, ours {b/len(prompts)*1000:.2f} ms/prompt, ratio {b/a:.3f}")
print("median ratio", sorted(ratios)[1])
