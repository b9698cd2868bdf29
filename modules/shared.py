"""Process-wide singletons, under the names A1111 extensions import.

`cmd_opts` starts as the defaults (so importing this module in tests or tools never reads the
caller's argv); webui.initialize() replaces it with the parsed command line before anything runs.
"""
import os

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("GRADIO_ANALYTICS_ENABLED", "False"), ("DISABLE_TELEMETRY", "1"),
                      ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ[_name] = _value

from modules import cmd_args, devices  # noqa: E402
from modules.hashes import HashCache  # noqa: E402
from modules.jobs import JobQueue  # noqa: E402
from modules.options import OptionInfo, Options, options_section  # noqa: E402,F401
from modules.paths import Paths  # noqa: E402
from modules.shared_options import register_builtin_options  # noqa: E402
from modules.state import State  # noqa: E402

cmd_opts = cmd_args.build_parser().parse_args([])
paths = Paths.from_args(cmd_opts)
opts = Options()
register_builtin_options(opts)
state = State()
job_queue = JobQueue(state)
hash_cache = HashCache(paths.cache_file)
device_config = devices.cpu_config()
model_holder = None  # modules.sd_models.ModelHolder, created by webui.initialize()
embedding_db = None  # modules.textual_inversion.EmbeddingDatabase, created by configure()
# A1111 names that higher floors provide when they are imported (modules.styles adds
# prompt_styles), read through __getattr__, so that shared never imports them (no circle)
lazy_attributes: dict = {}


def configure(args) -> None:
    """Adopt the parsed command line: folders, devices, caches."""
    global cmd_opts, paths, hash_cache, device_config, embedding_db
    from modules.textual_inversion import EmbeddingDatabase
    cmd_opts = args
    paths = Paths.from_args(args)
    hash_cache = HashCache(paths.cache_file)
    device_config = devices.choose(args)
    embedding_db = EmbeddingDatabase([paths.embeddings], hash_cache=hash_cache)


def __getattr__(name):
    # `shared.sd_model` is the loaded model, read through the holder (None when nothing is loaded)
    if name == "sd_model":
        return model_holder.sd_model if model_holder is not None else None
    if name in lazy_attributes:  # e.g. prompt_styles, A1111's name for the style database
        return lazy_attributes[name]()
    raise AttributeError(name)
