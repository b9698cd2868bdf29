"""The Settings tab's Callbacks page (ui.md §9.1, extensions.md §6.3): one priority list per callback
category that has callbacks, script hooks (`script_<method>`) included, made once the scripts are
loaded. The lists are read when callbacks are first put in order, so a change needs a restart."""
from modules import script_callbacks, scripts
from modules.options import Options
from modules.settings import presentation


def default_orders() -> dict[str, list[str]]:
    """Category -> callback names in the order they run without a priority list (registration
    order, then metadata.ini rules); categories without callbacks are left out."""
    orders = {}
    for category in script_callbacks.CATEGORIES:
        callbacks = script_callbacks.ordered_callbacks(category, enable_user_sort=False)
        if callbacks:
            orders[category] = [c.name for c in callbacks]
    for method in scripts.HOOKS:
        names = []  # txt2img's scripts, then img2img's that txt2img lacks
        for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
            names += [c.name for c in runner.hook_callbacks(method, enable_user_sort=False) if c.name not in names]
        if names:
            orders[f"script_{method}"] = names
    return orders


def register(opts: Options) -> list[str]:
    """(Re-)register the priority settings for the callbacks there are now; returns their keys.
    Lists of an earlier load whose category has no callbacks any more are dropped from the page;
    their saved values stay in opts.data (and config.json)."""
    for key in [k for k in opts.data_labels if k.startswith(presentation.CALLBACK_PRIORITY_PREFIX)]:
        del opts.data_labels[key]
    keys = []
    for category, names in default_orders().items():
        key, info = presentation.callback_priority_option(category, names)
        opts.add_option(key, info)
        keys.append(key)
    return keys
