"""The Settings tab's fixed pages (ui.md §9.5): Defaults, Sysinfo, Actions, Licenses, and the
Reload UI button's handler."""
import concurrent.futures
import importlib.metadata

import gradio as gr

from modules import checkpoint_residency, restart, sd_models, shared

PAGES = [("Defaults", "settings_defaults"), ("Sysinfo", "settings_sysinfo"),
         ("Actions", "settings_actions"), ("Licenses", "settings_licenses")]

# The page shows a reloading screen, waits until the old server stopped answering, then until the
# new one answers /internal/ping (every 0.5 s after 2 s), and loads itself again.
RELOAD_JS = """() => {
  document.body.innerHTML = '<h1 style="font-family: sans-serif; margin: 2em;">Reloading...</h1>';
  let wentDown = false; const started = Date.now();
  const ping = () => fetch('./internal/ping', {cache: 'no-store'})
      .then(r => { if (wentDown || Date.now() - started > 60000) location.reload(); else setTimeout(ping, 500); })
      .catch(() => { wentDown = true; setTimeout(ping, 500); });
  setTimeout(ping, 2000);
}"""


def reload_ui() -> str:
    if not restart.is_restartable():
        return "<span class='error'>Reload UI needs the program started with webui.py or launch.py</span>"
    restart.schedule_restart()
    return "Reloading..."


def _unload() -> str:
    return shared.job_queue.run(lambda: checkpoint_residency.unload_to_ram(shared.model_holder),
                                name="unload-checkpoint")


def _reload() -> str:
    return shared.job_queue.run(lambda: checkpoint_residency.reload_to_device(shared.model_holder),
                                name="reload-checkpoint")


def calculate_all_hashes(workers: float) -> str:
    """sha256 of every checkpoint that has none yet, `workers` files at a time, on the job queue."""
    workers = max(1, int(workers or 1))

    def job():
        infos = list(sd_models.checkpoints_list.values())
        missing = [info for info in infos if not info.sha256]
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda info: info.calculate_shorthash(), missing))
        return f"Hashes of {len(infos)} checkpoints ready ({len(missing)} calculated now)."
    return shared.job_queue.run(job, name="calculate-hashes")


def _licenses_text() -> str:
    rows = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if name:
            licence = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
            licence = licence.splitlines()[0][:80] if licence else "see the package"
            rows.append(f"| {name} | {dist.version} | {licence} |")
    return ("This program is built on the packages below; each keeps its own licence.\n\n"
            "| Package | Version | Licence |\n|---|---|---|\n" + "\n".join(rows))


def _check_sysinfo(file) -> str:
    from modules.settings import sysinfo
    if file is None:
        return ""
    with open(file, encoding="utf8", errors="replace") as handle:
        return "Valid" if sysinfo.check(handle.read()) else "Invalid"


def _sysinfo_text() -> str:
    from modules.settings import sysinfo
    return sysinfo.get_text()


def create(demo: gr.Blocks, result) -> dict:
    from modules.ui import ui_config
    parts = {}
    with gr.Column(elem_id="settings_defaults", elem_classes=["settings-page", "settings-fixed"]):
        gr.Markdown("### Defaults")
        parts["defaults"] = ui_config.create_defaults_page()
    with gr.Column(elem_id="settings_sysinfo", elem_classes=["settings-page", "settings-fixed"]):
        gr.Markdown("### Sysinfo")
        gr.HTML('<a href="./internal/sysinfo-download" download id="sysinfo_download">Download system info</a>'
                ' &middot; <a href="./internal/sysinfo" target="_blank">(or open as text in a new page)</a>')
        view = gr.Button("Show system info here", size="sm", elem_id="settings_sysinfo_show")
        text = gr.Code(language="json", elem_id="settings_sysinfo_text", interactive=False)
        upload = gr.File(label="Check system info for validity", type="filepath", elem_id="sysinfo_check_file")
        validity = gr.HTML(elem_id="sysinfo_validity")
        view.click(_sysinfo_text, outputs=[text], api_visibility="private")
        upload.change(_check_sysinfo, inputs=[upload], outputs=[validity], api_visibility="private")
    with gr.Column(elem_id="settings_actions", elem_classes=["settings-page", "settings-fixed"]):
        gr.Markdown("### Actions")
        unload = gr.Button("Unload SD checkpoint to RAM", elem_id="sett_unload_sd_model")
        reload = gr.Button("Load SD checkpoint to VRAM from RAM", elem_id="sett_reload_sd_model")
        with gr.Row():
            workers = gr.Number(label="Number of parallel calculations", value=1, minimum=1, precision=0,
                                elem_id="calculate_all_checkpoint_hash_threads")
            hashes = gr.Button("Calculate hash for all checkpoint", elem_id="calculate_all_checkpoint_hash")
        unload.click(_unload, outputs=[result], api_visibility="private")
        reload.click(_reload, outputs=[result], api_visibility="private")
        hashes.click(calculate_all_hashes, inputs=[workers], outputs=[result], api_visibility="private")
    with gr.Column(elem_id="settings_licenses", elem_classes=["settings-page", "settings-fixed"]):
        gr.Markdown("### Licenses")
        gr.Markdown(_licenses_text())
    return parts
