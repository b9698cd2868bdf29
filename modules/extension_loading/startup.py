"""The extension steps of start-up (extensions.md §3), called by webui: load scripts, register
settings, build script controls for API-only servers, app_started."""
import gradio as gr

from modules import errors, script_callbacks, scripts, shared
from modules.extension_loading import callback_settings


def _prioritized(category: str) -> list:
    """The user's priority list of a category (Settings > Callbacks); none when the setting does not
    exist (yet: on_ui_settings callbacks are ordered before the lists are registered)."""
    key = f"prioritized_callbacks_{category}"
    try:
        names = getattr(shared.opts, key)
    except AttributeError:
        return []
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        errors.report(f"Setting {key} is not a list of callback names ({names!r}); "
                      f"the {category} callbacks run in their default order")
        return []
    return list(names)


def load_extensions() -> None:
    """Step 3: import every script of the program and the enabled extensions; then their settings
    (on_ui_settings runs now, so settings extensions add exist for the API too)."""
    from modules import extension_compat
    extension_compat.install()  # A1111 names extensions read from shared, devices, sd_samplers ...
    script_callbacks.prioritized_names = _prioritized
    scripts.load_scripts()
    from modules.postprocessing import main_ui
    scripts.scripts_data.extend(main_ui.script_class_data())  # postprocessing_enable_in_main_ui
    script_callbacks.ui_settings_callback()
    scripts.scripts_txt2img.initialize_scripts(is_img2img=False)
    scripts.scripts_img2img.initialize_scripts(is_img2img=True)
    callback_settings.register(shared.opts)  # the Callbacks page, for what is registered now
    from modules.extension_loading import model_options
    model_options.register(shared.opts)  # on_list_optimizers / on_list_unets: what extensions offer


def before_ui() -> None:
    from modules.extension_loading import component_hooks
    component_hooks.install()
    component_hooks.runners[:] = [scripts.scripts_txt2img]  # the img2img tab will set its own
    script_callbacks.before_ui_callback()


def after_ui(demo=None) -> None:
    from modules.extension_loading import component_hooks
    component_hooks.runners[:] = []
    shared.demo = demo


def setup_scripts_without_ui() -> None:
    """API-only server: the scripts' controls still give the API its default script_args."""
    with gr.Blocks(analytics_enabled=False):
        for runner in (scripts.scripts_txt2img, scripts.scripts_img2img):
            if not runner.ui_created:
                runner.setup_ui()


def app_started(demo, app) -> None:
    """Step 6: extensions add routes to the app; those go before the UI's catch-all mount at /."""
    script_callbacks.app_started_callback(demo, app)
    from starlette.routing import Mount
    routes = app.router.routes
    mounts = [r for r in routes if isinstance(r, Mount) and r.path in ("", "/")]
    routes[:] = [r for r in routes if r not in mounts] + mounts
    for message in scripts.load_errors:
        errors.report(message)
