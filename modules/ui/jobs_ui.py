"""Running a queue job from a Gradio handler while showing its progress and live previews."""
import time

import gradio as gr

from modules import shared


def watch_job(fn, name: str, progress: gr.Progress | None = None, task_id: str | None = None):
    """Generator: submits fn to the job queue, reports 'i/N steps', yields each new live preview
    image, and returns the job's result (raising its exception)."""
    job = shared.job_queue.submit(fn, name=name, task_id=task_id)
    state = shared.state
    last_preview = state.id_live_preview if state.task_id == job.task_id else 0
    while not job.future.done():
        active = state.task_id == job.task_id
        state.want_preview()
        if progress is not None:
            if not active:
                pending = shared.job_queue.pending_tasks()
                ahead = pending.index(job.task_id) if job.task_id in pending else 0
                progress(0, desc=f"Waiting in queue ({ahead} ahead)")
            elif state.sampling_steps:
                progress((state.sampling_step, state.sampling_steps), desc=state.job, unit="steps")
        if active and state.current_image is not None and state.id_live_preview != last_preview:
            last_preview = state.id_live_preview
            yield state.current_image
        time.sleep(0.1)
    return job.future.result()

