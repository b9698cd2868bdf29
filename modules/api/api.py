"""The A1111-compatible REST API under /sdapi/v1 (api.md). Every model job goes through the queue."""
import base64
import io
import itertools
import json
import math

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from modules import (admission, face_restoration, hires, infotext_utils, jobs, processing, sd_models, sd_samplers,
                     sd_vae, shared, upscaling)
from modules import errors, scripts
from modules.api import models, scripts_routes
from modules.controlnet import job as controlnet_job
from modules.models.loader import ModelLoadError
from modules.options import OptionError

# Exceptions whose message is meant for the client, with the status to answer.
_CLIENT_ERRORS = (
    (admission.JobOutOfMemory, 507),
    (sd_samplers.SamplerNotFound, 422),
    (sd_models.CheckpointNotFound, 422),
    (OptionError, 422),
    (processing.GenerationError, 422),
    (controlnet_job.ControlNetError, 422),
    (sd_models.NoModelError, 503),
    (ModelLoadError, 500),
    (upscaling.UnknownUpscaler, 422),
    (upscaling.UpscalerUnavailable, 503),
    (face_restoration.FaceRestorationUnavailable, 503),
)

SECRET_FLAGS = ("api_auth", "gradio_auth", "ngrok", "tls_keyfile")


def _error_body(error: str, detail: str, errors: str) -> dict:
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_exception(request: Request, e: HTTPException):
        return JSONResponse(_error_body("HTTPException", str(e.detail), f"{e.status_code}: {e.detail}"),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        return JSONResponse({"detail": _json_safe(jsonable_encoder(e.errors()))}, status_code=422)


def _json_safe(value):
    """A validation error echoes the input: NaN / inf in it must not turn the 422 into a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _json_or_none(value):
    """Settings whose value cannot be written as JSON are reported as null (api.md §11.1)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _raise_for(e: Exception):
    for kind, status in _CLIENT_ERRORS:
        if isinstance(e, kind):
            raise HTTPException(status_code=status, detail=str(e)) from e
    errors.record_exception(e)  # an unexpected error: kept for Sysinfo's "Exceptions"
    raise e


def encode_image(image, infotext: str | None) -> str:
    """Raw base64 (no data: prefix) in the samples_format, infotext embedded (api.md §4.2)."""
    fmt = shared.opts.samples_format.lower()
    buffer = io.BytesIO()
    if fmt in ("jpg", "jpeg", "webp"):
        image = image.convert("RGB") if image.mode in ("RGBA", "P") else image
        exif = infotext_utils.exif_bytes_for(infotext) if infotext else None
        kwargs = {"exif": exif} if exif else {}
        image.save(buffer, format="JPEG" if fmt != "webp" else "WEBP", quality=shared.opts.jpeg_quality, **kwargs)
    else:
        image.save(buffer, format="PNG", pnginfo=infotext_utils.pnginfo_for(infotext) if infotext else None)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def resolve_sampler(sampler_name, sampler_index, scheduler) -> tuple[str, str]:
    """api.md §8.3: sampler_name, else sampler_index (default "Euler"); legacy combined names."""
    if isinstance(sampler_index, int) and not sampler_name:
        raise HTTPException(422, "sampler_index must be a sampler name")
    try:
        return sd_samplers.split_legacy_name(sampler_name or sampler_index or "Euler", scheduler)
    except ValueError as e:  # SamplerNotFound too: both list the valid names
        raise HTTPException(422, str(e)) from None


def check_vae_choice(values: dict) -> None:
    """A VAE named in settings must exist: a job silently made with another VAE looks different."""
    choice = values.get("sd_vae")
    if choice is not None and not sd_vae.is_known_choice(choice):
        raise HTTPException(422, f"VAE '{choice}' not found; choose Automatic, None or one of GET /sd-vae")


def validate_overrides(override_settings: dict | None) -> dict:
    overrides = dict(override_settings or {})
    try:
        converted = shared.opts.validate(overrides, api=True)
    except OptionError as e:
        raise HTTPException(422, str(e)) from None
    check_vae_choice(converted)
    if converted.get("sd_model_checkpoint"):
        try:
            info = sd_models.find_checkpoint(converted["sd_model_checkpoint"])
        except sd_models.CheckpointNotFound as e:
            raise HTTPException(422, str(e)) from None
        converted["sd_model_checkpoint"] = info.title
    return converted


def apply_infotext(req: models._ProcessingRequest) -> models._ProcessingRequest:
    """The request's `infotext` fills the fields the client did not set, and adds the settings it
    names to override_settings (api.md §8.9)."""
    from pydantic import ValidationError

    from modules import infotext_fields
    from modules.api.outputs_routes import parse_infotext_with_settings
    params = parse_infotext_with_settings(req.infotext)
    filled = infotext_fields.fill_request(req.model_dump(), req.model_fields_set, params)
    try:
        overrides = infotext_fields.settings_overrides(params, shared.opts, req.override_settings or {})
        filled["override_settings"] = {**overrides, **(req.override_settings or {})}
        return type(req)(**filled)
    except (ValidationError, OptionError) as e:
        raise HTTPException(422, f"The infotext has a value this request cannot take: {e}") from None


# request fields that are not passed to the processing object as they are (images are decoded first)
_NOT_PROCESSING_FIELDS = ("override_settings", "sampler_name", "scheduler", "firstpass_image", "init_images",
                          "mask", "latent_mask")


def build_processing(req: models._ProcessingRequest, processing_class, **decoded):
    """A txt2img or img2img request -> (request after infotext filling, its values with defaults,
    the processing object). `decoded`: fields already turned into images (img2img)."""
    if req.infotext:
        req = apply_infotext(req)
    args = req.with_defaults()
    sampler, scheduler = resolve_sampler(args["sampler_name"], args["sampler_index"], args["scheduler"])
    for side in ("width", "height"):
        if not 64 <= args[side] <= 8192:
            raise HTTPException(422, f"{side} must be between 64 and 8192, got {args[side]}")
    overrides = validate_overrides(args["override_settings"])
    fields = {name: args[name] for name in processing_class.__dataclass_fields__
              if name in args and name not in _NOT_PROCESSING_FIELDS}
    p = processing_class(**fields, **decoded)
    p.sampler_name, p.scheduler = sampler, scheduler
    p.override_settings = overrides
    p.do_not_save_samples = p.do_not_save_grid = not args["save_images"]
    p.comments = args["comments"] or {}
    scripts_routes.attach_scripts(p, not processing_class.is_txt2img, args["script_name"], args["script_args"],
                                  args["alwayson_scripts"])
    return req, args, p


def run_generation(p, args: dict, name: str):
    """Run the job on the queue; (processed, base64 images or [] when send_images is off)."""
    task_id = args["force_task_id"] or jobs.new_task_id(name)
    try:
        processed = shared.job_queue.run(lambda: scripts.process_with_scripts(p), name=name, task_id=task_id)
    except Exception as e:  # noqa: BLE001 - mapped to a status, or re-raised as a 500
        _raise_for(e)
    # ControlNet's detected maps come after the images and have no infotext
    images = [encode_image(image, text) for image, text in
              itertools.zip_longest(processed.images, processed.infotexts[:len(processed.images)])] \
        if args["send_images"] else []
    return processed, images


class Api:
    def __init__(self, app: FastAPI):
        self.router = APIRouter(prefix="/sdapi/v1")
        r = self.router
        r.add_api_route("/txt2img", self.text2imgapi, methods=["POST"], response_model=models.TextToImageResponse)
        r.add_api_route("/progress", self.progressapi, methods=["GET"], response_model=models.ProgressResponse)
        r.add_api_route("/interrupt", self.interruptapi, methods=["POST"])
        r.add_api_route("/skip", self.skip, methods=["POST"])
        r.add_api_route("/options", self.get_config, methods=["GET"])
        r.add_api_route("/options", self.set_config, methods=["POST"])
        r.add_api_route("/cmd-flags", self.get_cmd_flags, methods=["GET"])
        r.add_api_route("/samplers", self.get_samplers, methods=["GET"], response_model=list[models.SamplerItem])
        r.add_api_route("/schedulers", self.get_schedulers, methods=["GET"])
        r.add_api_route("/upscalers", self.get_upscalers, methods=["GET"])
        r.add_api_route("/latent-upscale-modes", self.get_latent_upscale_modes, methods=["GET"])
        r.add_api_route("/sd-models", self.get_sd_models, methods=["GET"], response_model=list[models.SDModelItem])
        r.add_api_route("/sd-vae", self.get_sd_vaes, methods=["GET"], response_model=list[models.SDVaeItem])
        r.add_api_route("/refresh-checkpoints", self.refresh_checkpoints, methods=["POST"])
        r.add_api_route("/refresh-vae", self.refresh_vae, methods=["POST"])
        r.add_api_route("/embeddings", self.get_embeddings, methods=["GET"])
        r.add_api_route("/refresh-embeddings", self.refresh_embeddings, methods=["POST"])
        from modules.api import extras_routes
        extras_routes.register(r)
        app.include_router(self.router)
        app.include_router(scripts_routes.create_router())  # /scripts, /script-info, /extensions
        app.add_api_route("/internal/ping", lambda: {}, methods=["GET"])
        app.add_api_route("/internal/pending-tasks", self.pending_tasks, methods=["GET"])

    # -- generation ----------------------------------------------------------------------------
    def text2imgapi(self, req: models.StableDiffusionProcessingTxt2Img):
        req, args, p = build_processing(req, processing.StableDiffusionProcessingTxt2Img)
        if args["firstpass_image"]:
            from modules.api.outputs_routes import decode_base64_to_image
            p.firstpass_image = decode_base64_to_image(args["firstpass_image"])
        processed, images = run_generation(p, args, "txt2img")
        return models.TextToImageResponse(images=images, parameters=req.model_dump(), info=processed.js())

    # -- progress and control ------------------------------------------------------------------
    def progressapi(self, skip_current_image: bool = False):
        state = shared.state
        if not skip_current_image:
            state.want_preview()
        if not state.job:
            return models.ProgressResponse(progress=0, eta_relative=0, state=state.dict(), textinfo=state.textinfo)
        image = state.current_image
        current = None if (skip_current_image or image is None) else encode_image(image, None)
        return models.ProgressResponse(progress=state.progress(), eta_relative=state.eta(), state=state.dict(),
                                       current_image=current, textinfo=state.textinfo)

    def interruptapi(self):
        shared.state.interrupt()
        return {}

    def skip(self):
        shared.state.skip()

    def pending_tasks(self):
        tasks = shared.job_queue.pending_tasks()
        return {"size": len(tasks), "tasks": tasks}

    # -- settings ------------------------------------------------------------------------------
    def get_config(self):
        return {key: _json_or_none(value) for key, value in shared.opts.current_values().items()}

    def set_config(self, req: dict):
        try:
            values = shared.opts.validate(req, api=True)
        except OptionError as e:
            status = 403 if "frozen" in str(e) else 422
            raise HTTPException(status, "Settings are frozen" if status == 403 else str(e)) from None
        check_vae_choice(values)
        checkpoint = values.pop("sd_model_checkpoint", None)
        if checkpoint:
            try:
                info = sd_models.find_checkpoint(checkpoint)
            except sd_models.CheckpointNotFound as e:
                raise HTTPException(422, str(e)) from None
            try:
                model = shared.job_queue.run(lambda: shared.model_holder.switch_to(info), name="load-checkpoint")
            except ModelLoadError as e:
                raise HTTPException(500, str(e)) from None
            values["sd_model_checkpoint"] = model.sd_checkpoint_info.title
        for key, value in values.items():
            try:
                shared.opts.set(key, value)
            except OptionError as e:  # its on-change hook refused it (an optimisation that failed to apply)
                shared.opts.save(shared.paths.settings_file)  # the keys set before it stay set
                raise HTTPException(422, str(e)) from None
        shared.opts.save(shared.paths.settings_file)

    def get_cmd_flags(self):
        flags = dict(vars(shared.cmd_opts))
        for key in SECRET_FLAGS:
            if flags.get(key):
                flags[key] = "***"
        from modules.cmd_args import is_exposed
        flags["webui_is_non_local"] = is_exposed(shared.cmd_opts)
        flags["disable_extension_access"] = is_exposed(shared.cmd_opts) and not \
            shared.cmd_opts.enable_insecure_extension_access
        return flags

    # -- lists ---------------------------------------------------------------------------------
    def get_samplers(self):
        return [{"name": s.name, "aliases": s.aliases, "options": {k: str(v) for k, v in s.options.items()}}
                for s in sd_samplers.all_samplers]

    def get_schedulers(self):
        from modules import sd_schedulers
        return [{"name": s.name, "label": s.label, "aliases": s.aliases, "default_rho": s.default_rho,
                 "need_inner_model": s.need_inner_model} for s in sd_schedulers.schedulers]

    def get_upscalers(self):
        from modules.api import extras_routes
        return extras_routes.upscaler_items()

    def get_latent_upscale_modes(self):
        return [{"name": name} for name in hires.LATENT_UPSCALE_MODES]

    def get_sd_models(self):
        return [{"title": info.title, "model_name": info.model_name, "hash": info.shorthash,
                 "sha256": info.sha256, "filename": info.filename, "config": info.config}
                for info in sorted(sd_models.checkpoints_list.values(), key=lambda i: i.title.lower())]

    def get_sd_vaes(self):
        return [{"model_name": name, "filename": path} for name, path in sd_vae.vae_dict.items()]

    def refresh_checkpoints(self):
        shared.job_queue.run(sd_models.list_models, name="refresh-checkpoints")

    def get_embeddings(self):
        return shared.embedding_db.api_listing()

    def refresh_embeddings(self):
        def rescan():
            model = shared.model_holder.sd_model
            if model is not None:
                sd_models.refresh_embeddings(model, force=True)
            else:
                shared.embedding_db.load_textual_inversion_embeddings(None, force_reload=True)
        shared.job_queue.run(rescan, name="refresh-embeddings")

    def refresh_vae(self):
        shared.job_queue.run(sd_vae.refresh_vae_list, name="refresh-vae")

