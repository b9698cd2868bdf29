"""Server routes of api.md §7 besides generation: memory, unloading/reloading the checkpoint,
stopping/restarting the server, and the /internal/* helpers of the UI (progress by task id,
quicksettings hint, sysinfo, start-up profile), in A1111's shapes."""
import base64
import io
import time

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from modules import checkpoint_residency, restart, shared


class ProgressRequest(BaseModel):
    id_task: str | None = None
    id_live_preview: int = -1
    live_preview: bool = True


def memory() -> dict:
    """RAM of the system and CUDA memory counters, in bytes; a part that cannot be read says why."""
    try:
        import psutil
        vm = psutil.virtual_memory()
        ram = {"free": vm.available, "used": vm.total - vm.available, "total": vm.total}
    except Exception as e:  # noqa: BLE001 - reported in the answer, as A1111 does
        ram = {"error": f"{e}"}
    import torch
    if not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "unavailable"}}
    try:
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name):
            return {"current": stats.get(f"{name}_bytes.all.current", 0), "peak": stats.get(f"{name}_bytes.all.peak", 0)}
        cuda = {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active"), "allocated": pair("allocated"), "reserved": pair("reserved"),
                "inactive": pair("inactive_split"),
                "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}
    except Exception as e:  # noqa: BLE001
        cuda = {"error": f"{e}"}
    return {"ram": ram, "cuda": cuda}


def unload_checkpoint() -> dict:
    shared.job_queue.run(lambda: checkpoint_residency.unload_to_ram(shared.model_holder), name="unload-checkpoint")
    return {}


def reload_checkpoint() -> dict:
    shared.job_queue.run(lambda: checkpoint_residency.reload_to_device(shared.model_holder), name="reload-checkpoint")
    return {}


def server_kill():
    import threading
    threading.Thread(target=restart.kill, daemon=True).start()
    return Response(status_code=200)


def server_restart():
    if not restart.is_restartable():
        raise HTTPException(501, "This server cannot restart itself; start it with webui.py or launch.py")
    restart.schedule_restart()
    return Response(status_code=200)


def server_stop():
    restart.stop()
    return PlainTextResponse("Stopping.")


def _preview_data_uri(image) -> str:
    fmt = (shared.opts.live_previews_image_format or "png").lower()
    buffer = io.BytesIO()
    if fmt in ("jpeg", "jpg"):
        image.convert("RGB").save(buffer, format="JPEG")
        mime = "jpeg"
    elif fmt == "webp":
        image.save(buffer, format="WEBP")
        mime = "webp"
    else:
        image.save(buffer, format="PNG")
        mime = "png"
    return f"data:image/{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def internal_progress(req: ProgressRequest) -> dict:
    """The UI's progress poll for one task id (api.md §10.3)."""
    state = shared.state
    status = shared.job_queue.status(req.id_task) if req.id_task else "unknown"
    active, queued, completed = status == "active", status == "queued", status == "completed"
    answer = {"active": active, "queued": queued, "completed": completed, "progress": None, "eta": None,
              "live_preview": None, "id_live_preview": -1, "textinfo": None}
    if queued:
        pending = shared.job_queue.pending_tasks()
        ahead = pending.index(req.id_task) if req.id_task in pending else 0
        answer["textinfo"] = "In queue..." if ahead == 0 else f"In queue: {ahead} ahead"
        return answer
    if completed:
        answer["progress"], answer["textinfo"] = 1.0, "Done"
        return answer
    if not active:
        answer["textinfo"] = "Waiting..."
        return answer
    progress = state.progress()
    elapsed = time.time() - state.time_start if state.time_start else 0.0
    answer["progress"] = progress
    answer["eta"] = elapsed / progress - elapsed if progress > 0 else None
    answer["textinfo"] = state.textinfo
    answer["id_live_preview"] = req.id_live_preview
    if req.live_preview:
        state.want_preview()
        image = state.current_image
        if image is not None and state.id_live_preview != req.id_live_preview:
            answer["live_preview"] = _preview_data_uri(image)
            answer["id_live_preview"] = state.id_live_preview
    return answer


def quicksettings_hint() -> list[dict]:
    return [{"name": key, "label": info.label} for key, info in shared.opts.data_labels.items()]


def sysinfo():
    from modules.settings import sysinfo as report
    return PlainTextResponse(report.get_text(), media_type="application/json")


def sysinfo_download():
    from modules.settings import sysinfo as report
    filename = f"sysinfo-{time.strftime('%Y-%m-%d-%H-%M', time.gmtime())}.json"
    return PlainTextResponse(report.get_text(), media_type="application/json",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def profile_startup() -> dict:
    from modules.startup_timer import startup_timer
    return startup_timer.summary()


def register(app: FastAPI, args) -> None:
    """The /sdapi/v1 routes with the API (--api / --nowebui); the /internal helpers always (the UI
    uses them)."""
    if args.api or args.nowebui:
        router = APIRouter(prefix="/sdapi/v1")
        router.add_api_route("/memory", memory, methods=["GET"])
        router.add_api_route("/unload-checkpoint", unload_checkpoint, methods=["POST"])
        router.add_api_route("/reload-checkpoint", reload_checkpoint, methods=["POST"])
        if args.api_server_stop:
            router.add_api_route("/server-kill", server_kill, methods=["POST"])
            router.add_api_route("/server-restart", server_restart, methods=["POST"])
            router.add_api_route("/server-stop", server_stop, methods=["POST"])
        app.include_router(router)
    app.add_api_route("/internal/progress", internal_progress, methods=["POST"])
    app.add_api_route("/internal/quicksettings-hint", quicksettings_hint, methods=["GET"])
    app.add_api_route("/internal/sysinfo", sysinfo, methods=["GET"])
    app.add_api_route("/internal/sysinfo-download", sysinfo_download, methods=["GET"])
    app.add_api_route("/internal/profile-startup", profile_startup, methods=["GET"])
