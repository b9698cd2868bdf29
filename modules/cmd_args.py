"""Command-line flags: every A1111 flag with its name, type and default (shared/spec/cmd-args.md).

Flags we cannot honour (network tunnels, installers, attention kernels we do not ship) are accepted
so that old command lines keep working; `notices_for()` names them at start-up.
"""
import argparse
import os
import shlex
import sys

SWITCH, TEXT, INT, PATH = "switch", "text", "int", "path"

# (flag, kind, default, help). Paths stay None when unset; modules.paths derives the defaults.
_FLAGS = [
    # server, network and access
    ("--listen", SWITCH, False, "bind to 0.0.0.0 so other machines can connect"),
    ("--port", INT, None, "port to listen on (7860 for the UI, 7861 with --nowebui)"),
    ("--server-name", TEXT, None, "host name or address to bind"),
    ("--share", SWITCH, False, "ask Gradio for a public link (needs network access)"),
    ("--ngrok", TEXT, None, "ngrok auth token (unavailable offline)"),
    ("--ngrok-region", TEXT, "", "no effect"),
    ("--ngrok-options", TEXT, "{}", "ngrok options as JSON (unavailable offline)"),
    ("--subpath", TEXT, None, "serve under this URL prefix"),
    ("--tls-keyfile", PATH, None, "TLS private key file"),
    ("--tls-certfile", PATH, None, "TLS certificate file"),
    ("--cors-allow-origins", TEXT, None, "comma-separated origins allowed to call the server"),
    ("--cors-allow-origins-regex", TEXT, None, "regular expression of allowed origins"),
    ("--gradio-auth", TEXT, None, "UI login user:password[,user2:password2]"),
    ("--gradio-auth-path", PATH, None, "file with more user:password entries"),
    ("--gradio-debug", SWITCH, False, "verbose UI server errors"),
    ("--gradio-queue", SWITCH, True, "no effect (the queue is always on)"),
    ("--no-gradio-queue", SWITCH, False, "no effect (the UI always uses the job queue)"),
    ("--timeout-keep-alive", INT, 30, "HTTP keep-alive timeout in seconds"),
    ("--autolaunch", SWITCH, False, "open the UI in the default browser after start"),
    ("--theme", TEXT, None, "force the light or dark theme"),
    ("--enable-insecure-extension-access", SWITCH, False, "allow extension installs when exposed"),
    ("--api-server-stop", SWITCH, False, "add the server-kill/restart/stop API routes"),
    ("--add-stop-route", SWITCH, False, "no effect (replaced by --api-server-stop)"),
    # API
    ("--api", SWITCH, False, "serve the REST API under /sdapi/v1"),
    ("--nowebui", SWITCH, False, "serve only the REST API"),
    ("--api-auth", TEXT, None, "HTTP Basic credentials for the API: user:password[,...]"),
    ("--api-log", SWITCH, False, "log every API request"),
    ("--skip-load-model-at-start", SWITCH, False, "do not load a checkpoint until one is needed"),
    # folders and files
    ("--data-dir", PATH, None, "root of all user data"),
    ("--models-dir", PATH, None, "root of the model folders"),
    ("--ckpt", PATH, None, "checkpoint to add to the list and load at start"),
    ("--ckpt-dir", PATH, None, "extra folder scanned recursively for checkpoints"),
    ("--vae-dir", PATH, None, "extra folder scanned for VAE files"),
    ("--vae-path", PATH, None, "always use this VAE file"),
    ("--config", PATH, None, "fallback model config (our detection takes precedence)"),
    ("--embeddings-dir", PATH, None, "textual-inversion embeddings folder"),
    ("--textual-inversion-templates-dir", PATH, None, "caption templates folder"),
    ("--hypernetwork-dir", PATH, None, "hypernetworks folder"),
    ("--lora-dir", PATH, None, "LoRA folder"),
    ("--lyco-dir-backcompat", PATH, None, "second LoRA/LyCORIS folder"),
    ("--localizations-dir", PATH, None, "UI translation files"),
    ("--ui-config-file", PATH, None, "saved UI control defaults"),
    ("--ui-settings-file", PATH, None, "settings file"),
    ("--codeformer-models-path", PATH, None, "CodeFormer weights"),
    ("--gfpgan-models-path", PATH, None, "GFPGAN weights"),
    ("--gfpgan-dir", PATH, None, "ignored"),
    ("--gfpgan-model", PATH, None, "specific GFPGAN weight file"),
    ("--esrgan-models-path", PATH, None, "ESRGAN upscalers"),
    ("--bsrgan-models-path", PATH, None, "BSRGAN upscalers"),
    ("--realesrgan-models-path", PATH, None, "Real-ESRGAN upscalers"),
    ("--dat-models-path", PATH, None, "DAT upscalers"),
    ("--scunet-models-path", PATH, None, "ScuNET upscalers"),
    ("--swinir-models-path", PATH, None, "SwinIR upscalers"),
    ("--ldsr-models-path", PATH, None, "LDSR upscaler"),
    ("--clip-models-path", PATH, None, "CLIP models for the interrogator"),
    # memory, precision and devices
    ("--lowvram", SWITCH, False, "keep only the running part of the model on the GPU"),
    ("--medvram", SWITCH, False, "keep text encoder, UNet and VAE on the GPU one at a time"),
    ("--medvram-sdxl", SWITCH, False, "--medvram only while an SDXL model is loaded"),
    ("--lowram", SWITCH, False, "load weights straight to VRAM"),
    ("--no-half", SWITCH, False, "keep the model in fp32"),
    ("--no-half-vae", SWITCH, False, "keep only the VAE in fp32"),
    ("--upcast-sampling", SWITCH, False, "fp16 weights with fp32 sampling math"),
    ("--use-ipex", SWITCH, False, "use an Intel XPU device"),
    ("--device-id", TEXT, None, "CUDA device index"),
    ("--opt-channelslast", SWITCH, False, "channels-last memory format for the UNet"),
    ("--xformers", SWITCH, False, "prefer xformers attention if installed"),
    ("--force-enable-xformers", SWITCH, False, "use xformers even if the check fails"),
    ("--xformers-flash-attention", SWITCH, False, "xformers with flash attention"),
    ("--opt-sdp-attention", SWITCH, False, "PyTorch scaled-dot-product attention (default)"),
    ("--opt-sdp-no-mem-attention", SWITCH, False, "SDP attention without the memory-efficient kernel"),
    ("--opt-split-attention", SWITCH, False, "prefer sliced attention"),
    ("--opt-split-attention-invokeai", SWITCH, False, "prefer InvokeAI-style sliced attention"),
    ("--opt-split-attention-v1", SWITCH, False, "prefer the older sliced attention"),
    ("--opt-sub-quad-attention", SWITCH, False, "prefer sub-quadratic attention"),
    ("--sub-quad-q-chunk-size", INT, 1024, "query chunk size for sub-quadratic attention"),
    ("--sub-quad-kv-chunk-size", INT, None, "key/value chunk size for sub-quadratic attention"),
    ("--sub-quad-chunk-threshold", INT, None, "VRAM percentage above which to chunk"),
    ("--disable-opt-split-attention", SWITCH, False, "prefer plain attention"),
    ("--disable-nan-check", SWITCH, False, "do not check UNet/VAE outputs for NaN"),
    ("--disable-model-loading-ram-optimization", SWITCH, False, "no low-RAM loading path"),
    ("--no-hashing", SWITCH, False, "never compute sha256 of checkpoints"),
    # launcher and installation
    ("--skip-install", SWITCH, False, "do not install packages"),
    ("--skip-prepare-environment", SWITCH, False, "skip all environment preparation"),
    ("--skip-torch-cuda-test", SWITCH, False, "run on CPU when no CUDA device is usable"),
    ("--skip-python-version-check", SWITCH, False, "do not check the Python version"),
    ("--skip-version-check", SWITCH, False, "do not check torch/xformers versions"),
    ("--reinstall-torch", SWITCH, False, "not available offline"),
    ("--reinstall-xformers", SWITCH, False, "not available offline"),
    ("--update-check", SWITCH, False, "not available offline"),
    ("--update-all-extensions", SWITCH, False, "not available offline"),
    ("--log-startup", SWITCH, False, "print start-up timing"),
    ("--dump-sysinfo", SWITCH, False, "write a system-information file and exit"),
    ("--test-server", SWITCH, False, "configure for the test suite"),
    ("--exit", SWITCH, False, "prepare the environment, then exit"),
    ("--do-not-download-clip", SWITCH, False, "we never download anything"),
    ("--no-download-sd-model", SWITCH, False, "we never download anything"),
    ("-f", SWITCH, False, "allow running as root"),
    ("--loglevel", TEXT, None, "log level"),
    # security and settings control
    ("--allow-code", SWITCH, False, "enable the Custom code script"),
    ("--disable-safe-unpickle", SWITCH, False, "ignored: pickles always load with weights_only=True"),
    ("--hide-ui-dir-config", SWITCH, False, "hide and freeze output-folder settings"),
    ("--freeze-settings", SWITCH, False, "make all settings read-only"),
    ("--freeze-settings-in-sections", TEXT, None, "comma-separated read-only sections"),
    ("--freeze-specific-settings", TEXT, None, "comma-separated read-only setting keys"),
    ("--administrator", SWITCH, False, "reserved"),
    ("--disable-all-extensions", SWITCH, False, "load no extensions"),
    ("--disable-extra-extensions", SWITCH, False, "load only built-in extensions"),
    # UI and console
    ("--use-textbox-seed", SWITCH, False, "seed fields are text boxes"),
    ("--disable-console-progressbars", SWITCH, False, "no console progress bars"),
    ("--no-progressbar-hiding", SWITCH, False, "always show the browser progress bar"),
    ("--ui-debug-mode", SWITCH, False, "start the UI without loading a model"),
    ("--no-prompt-history", SWITCH, False, "do not write params.txt"),
    ("--unix-filenames-sanitization", SWITCH, False, "only / is replaced in file names"),
    ("--filenames-max-length", INT, 128, "maximum length of a file-name part"),
    # accepted without effect
    ("--max-batch-count", INT, 16, "no effect"),
    ("--always-batch-cond-uncond", SWITCH, False, "no effect"),
    ("--unload-gfpgan", SWITCH, False, "no effect"),
    ("--deepdanbooru", SWITCH, False, "no effect"),
    ("--show-negative-prompt", SWITCH, False, "no effect"),
    ("--gradio-img2img-tool", TEXT, None, "no effect"),
    ("--gradio-inpaint-tool", TEXT, None, "no effect"),
    ("--enable-console-prompts", SWITCH, False, "no effect (use the setting)"),
]

# Flags that need something this offline build does not have: named at start-up.
_UNAVAILABLE = {
    "ngrok": "ngrok tunnels need network access; serving locally only",
    "reinstall_torch": "packages are never reinstalled at run time (offline)",
    "reinstall_xformers": "packages are never reinstalled at run time (offline)",
    "update_check": "update checks need network access",
    "update_all_extensions": "extension updates need network access",
    "use_ipex": "Intel XPU support is not built in; using the default device",
    "xformers": "xformers is used only if installed; otherwise PyTorch SDP attention",
    "opt_split_attention_invokeai": "mapped to PyTorch SDP attention",
    "opt_split_attention_v1": "mapped to PyTorch SDP attention",
    "opt_sub_quad_attention": "mapped to PyTorch SDP attention",
    "disable_safe_unpickle": "ignored: checkpoints always load with torch.load(weights_only=True)",
}


# Functions that add flags to the parser: extensions' preload.py (set by webui before parsing).
parser_extenders: list = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="Stable Diffusion web UI")
    for flag, kind, default, help_text in _FLAGS:
        if kind == SWITCH:
            parser.add_argument(flag, action="store_true", default=default, help=help_text)
        elif kind == INT:
            parser.add_argument(flag, type=int, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=default, help=help_text)
    parser.add_argument("--disable-tls-verify", action="store_false", default=None,
                        help="allow self-signed certificates")
    parser.add_argument("--gradio-allowed-path", action="append", default=[],
                        help="extra folder the UI may serve files from (repeatable)")
    parser.add_argument("--styles-file", action="append", default=[],
                        help="prompt style CSV file (repeatable, wildcards allowed)")
    parser.add_argument("--precision", choices=["full", "half", "autocast"], default="autocast",
                        help="compute precision")
    parser.add_argument("--use-cpu", nargs="+", default=[], type=str.lower,
                        help="run these parts on the CPU: all, sd, interrogate, gfpgan, esrgan, ...")
    parser.add_argument("--job-memory-limit", type=float, default=None, metavar="GIB",
                        help="peak memory a job may use (GiB; 0 = no limit); default: the free RAM / VRAM "
                             "when the first job starts")
    # the ControlNet extension's flags (built in here, controlnet.md §6)
    parser.add_argument("--controlnet-dir", default=None, help="extra folder of ControlNet models")
    parser.add_argument("--controlnet-annotator-models-path", default=None,
                        help="folder of ControlNet preprocessor weights")
    parser.add_argument("--no-half-controlnet", action="store_true", default=False,
                        help="keep ControlNet models in float32")
    parser.add_argument("--controlnet-preprocessor-cache-size", type=int, default=16,
                        help="preprocessor results kept in memory")
    parser.add_argument("--controlnet-loglevel", default="INFO", help="ControlNet log level (accepted)")
    for extend in parser_extenders:
        extend(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse argv plus COMMANDLINE_ARGS; an unknown flag is an error unless
    IGNORE_CMD_ARGS_ERRORS is set."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    parser = build_parser()
    if os.environ.get("IGNORE_CMD_ARGS_ERRORS"):
        args, _unknown = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    for name, value in vars(args).items():
        if name in _path_dests() and isinstance(value, str):
            setattr(args, name, os.path.abspath(value))
    args.styles_file = [os.path.abspath(p) for p in args.styles_file]
    args.gradio_allowed_path = [os.path.abspath(p) for p in args.gradio_allowed_path]
    if args.test_server:
        args.api = True
        args.skip_torch_cuda_test = True
        args.disable_nan_check = True
    return args


def _path_dests() -> set[str]:
    return {flag.lstrip("-").replace("-", "_") for flag, kind, _, _ in _FLAGS if kind == PATH}


def notices_for(args: argparse.Namespace) -> list[str]:
    """One line for each given flag that this build accepts but cannot honour."""
    return [f"--{name.replace('_', '-')}: {why}" for name, why in _UNAVAILABLE.items()
            if getattr(args, name, None)]


def is_exposed(args: argparse.Namespace) -> bool:
    """True when the server can be reached from other machines."""
    return bool(args.listen or args.share or args.ngrok or args.server_name)
