import os
import re

from modules import scripts

WILDCARDS = os.path.join(scripts.basedir(), "wildcards")  # captured at import, as extensions must


def _choose(name, seed):
    with open(os.path.join(WILDCARDS, f"{name}.txt"), encoding="utf8") as file:
        lines = [line.strip() for line in file if line.strip()]
    return lines[seed % len(lines)]


class WildcardsLite(scripts.Script):
    def title(self):
        return "Wildcards lite"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        original = p.all_prompts[0]
        p.all_prompts = [re.sub(r"__(\w+)__", lambda m: _choose(m.group(1), seed), prompt)
                         for prompt, seed in zip(p.all_prompts, p.all_seeds)]
        if p.all_prompts[0] != original:
            p.extra_generation_params["Wildcard prompt"] = original
