from modules import script_callbacks, scripts


class RaisingHooks(scripts.Script):
    def title(self):
        return "Raising hooks"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        raise RuntimeError("raising-ext: process hook fails on purpose")

    def postprocess_image(self, p, pp, *args):
        raise RuntimeError("raising-ext: postprocess_image fails on purpose")


def _raise(*args):
    raise RuntimeError("raising-ext: callback fails on purpose")


script_callbacks.on_cfg_denoiser(_raise)
script_callbacks.on_image_saved(_raise)
script_callbacks.on_app_started(_raise)
