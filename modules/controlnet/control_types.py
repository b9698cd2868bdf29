"""Control types (controlnet.md §5): per tag, the preprocessors and models that belong to it and the
defaults the UI's Control Type radio selects; GET /controlnet/control_types returns the same."""
from modules.controlnet import model_files, preprocessors

# control type -> extra words a model name may contain to belong to it (§5)
_TYPE_ALIASES = {
    "InstructP2P": ["ip2p"], "Segmentation": ["seg"], "NormalMap": ["normal"],
    "T2I-Adapter": ["t2i_adapter", "t2iadapter", "t2ia"], "IP-Adapter": ["ip_adapter", "ipadapter"],
    "OpenPose": ["densepose"], "Instant-ID": ["instant_id", "instantid"], "Scribble": ["sketch"],
    "Tile": ["blur"],
}
_UNION_TYPES = {"OpenPose", "Depth", "SoftEdge", "Scribble", "Canny", "Lineart", "MLSD", "NormalMap",
                "Segmentation", "Inpaint", "Tile"}


def _models_for(tag: str, titles: list[str]) -> list[str]:
    if tag == "All":
        return titles
    words = [tag.lower(), *_TYPE_ALIASES.get(tag, [])] + (["union"] if tag in _UNION_TYPES else [])
    return [t for t in titles if any(w in t.lower() for w in words)]


def control_types() -> dict:
    titles = [m.title for m in model_files.list_models()]
    result = {}
    for tag in preprocessors.control_type_tags():
        if tag == "All":
            modules = [p.label for p in preprocessors.ordered()]
        else:
            modules = ["none", *(p.label for p in preprocessors.ordered() if tag in p.tags and p.name != "none")]
        models = ["None", *_models_for(tag, titles)]
        default_option = modules[1] if tag != "All" and len(modules) >= 2 else "none"
        named_11 = [m for m in models[1:] if "11" in m.split("[")[0]]
        default_model = "None" if tag == "All" else (named_11 or models[1:] or ["None"])[0]
        result[tag] = {"module_list": modules, "model_list": models, "default_option": default_option,
                       "default_model": default_model}
    return result
