"""Builds the server: FastAPI app with the API under /sdapi/v1 and the Gradio UI at /."""
import os
import shlex
import socket
import sys
import time

from modules.startup_timer import startup_timer  # first: it times the imports below
from modules import shared  # sets the offline environment before the libraries load  # noqa: E402

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from modules import auth, cmd_args, sd_models, sd_vae  # noqa: E402
from modules.api import (controlnet_routes, img2img_route, merge_routes, networks_routes, outputs_routes,  # noqa: E402
                         train_routes)
from modules.api import server_routes  # noqa: E402
from modules.api.api import Api, install_error_handlers  # noqa: E402
from modules.shared_options import freeze_from_flags  # noqa: E402


def initialize(args) -> None:
    shared.configure(args)
    shared.opts.load(shared.paths.settings_file)
    freeze_from_flags(shared.opts, args)
    from modules.extension_loading import startup  # extensions: scripts, callbacks, their settings
    startup.load_extensions()
    for folder in (shared.paths.checkpoints, shared.paths.vae, shared.paths.embeddings):
        os.makedirs(folder, exist_ok=True)  # show new users where their files go
    shared.model_holder = sd_models.ModelHolder()
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    from modules import networks
    networks.initialize()  # LoRA / hypernetwork folders listed, tag handlers registered
    for notice in cmd_args.notices_for(args):
        print(f"Notice: {notice}")


def create_app(args) -> FastAPI:
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs", redoc_url="/redoc")
    install_error_handlers(app)
    if args.api or args.nowebui:
        Api(app)
        app.include_router(outputs_routes.create_router())
        app.include_router(networks_routes.create_router())
        app.include_router(img2img_route.create_router())
        app.include_router(train_routes.create_router())
        app.include_router(merge_routes.create_router())
    app.include_router(controlnet_routes.create_router())  # the extension's routes exist without --api too
    server_routes.register(app, args)  # memory, checkpoint unload/reload, server stop, /internal/*
    api_creds = auth.api_credentials(args)
    app.add_middleware(auth.ApiAuthMiddleware, creds=api_creds, protect=auth.is_api_path)
    from modules.extension_loading import page_assets, startup
    demo = None
    if not args.nowebui:
        from modules.ui.app import CSS, JS, create_ui
        app.include_router(networks_routes.create_ui_router())  # card previews
        ui_creds = auth.ui_credentials(args)
        ui_auth = (lambda user, password: auth.check(ui_creds, user, password)) if ui_creds else None
        save_dir = os.path.join(shared.paths.data, shared.opts.outdir_save)  # Save/Zip downloads
        startup.before_ui()
        demo = create_ui()
        startup.after_ui(demo)
        gr.mount_gradio_app(app, demo, path="/", auth=ui_auth, css=CSS + page_assets.extension_css(), js=JS,
                            head=page_assets.extension_head(),
                            allowed_paths=[shared.paths.outputs, save_dir, *args.gradio_allowed_path])
    startup.setup_scripts_without_ui()
    startup.app_started(demo, app)
    return app


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(args, host: str) -> int:
    if args.port:
        return args.port
    port = 7861 if args.nowebui else 7860
    while not _port_free(host, port) and port < 7960:
        port += 1  # A1111 takes the next free port when the default is busy
    return port


def try_share(port: int) -> None:
    """Gradio's public tunnel needs the network; say so plainly when it cannot be had."""
    try:
        from gradio import networking
        url = networking.setup_tunnel("127.0.0.1", port, share_token=os.urandom(16).hex(),
                                      share_server_address=None, share_server_tls_certificate=None)
        print(f"Public link: {url}")
    except Exception as e:  # noqa: BLE001 - any failure means: no public link, keep serving locally
        print(f"--share: a public link is not available ({type(e).__name__}: {e}). "
              f"Serving locally only.")


def main(argv=None) -> None:
    started = time.time()
    from modules import restart
    startup_timer.record("import modules")
    from modules.extension_loading import preload  # extensions' preload.py may add flags
    all_argv = list(sys.argv[1:] if argv is None else argv) + shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    cmd_args.parser_extenders[:] = [lambda parser: preload.run_preloads(parser, all_argv)]
    args = cmd_args.parse_args(argv)
    initialize(args)
    startup_timer.record("initialize")
    app = create_app(args)
    startup_timer.record("create app")
    host = args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")
    port = choose_port(args, host)
    if args.share:
        try_share(port)
    print(f"Running on local URL: http://{host}:{port} (prepared in {time.time() - started:.1f}s)")
    sys.stdout.flush()
    # after the line above, so the worker's "Loading checkpoint" message is not printed into it
    if not (args.ui_debug_mode or (args.nowebui and args.skip_load_model_at_start)):
        shared.model_holder.startup_job = shared.job_queue.submit(
            lambda: sd_models.load_at_start(shared.model_holder), name="load-model")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_keep_alive=args.timeout_keep_alive,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
                            ssl_keyfile=args.tls_keyfile if args.tls_certfile else None,
                            ssl_certfile=args.tls_certfile if args.tls_keyfile else None)
    restart.server = StoppingServer(config)
    restart.server.run()


# After Ctrl+C / SIGTERM, requests still open (a job's) get this long before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 5


class StoppingServer(uvicorn.Server):
    """Ctrl+C or SIGTERM also interrupts the running job, so the program stops within seconds
    instead of waiting for a long job's request to finish."""

    def handle_exit(self, sig, frame):
        if not self.should_exit and shared.state.job:
            print("Stopping: interrupting the current job")
            shared.state.interrupt()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    main()
