"""The built-in ControlNet (modules/controlnet), registered as the always-on script "ControlNet"."""
from modules.controlnet.script import ControlNetScript  # noqa: F401 (load_scripts registers it)
