"""Running a queue job from a Gradio handler while showing its progress and live previews."""
import time

import gradio as gr

from modules import shared


PROGRESS_PERIOD = 0.5  # seconds between progress messages to the page


def watch_job(fn, name: str, progress: gr.Progress | None = None, task_id: str | None = None):
    """Generator: submits fn to the job queue, reports 'i/N steps', yields each new live preview
    image, and returns the job's result (raising its exception)."""
    job = shared.job_queue.submit(fn, name=name, task_id=task_id)
    state = shared.state
    last_preview = state.id_live_preview if state.task_id == job.task_id else 0
    # Every message to the page makes Gradio's front end walk its whole state (over a thousand
    # components with the Settings tab): send a change at most every PROGRESS_PERIOD seconds and a
    # preview at most every live_preview_refresh_period, as A1111's page polls.
    last_report, next_progress, next_preview = None, 0.0, 0.0
    while not job.future.done():
        active = state.task_id == job.task_id
        state.want_preview()
        now = time.monotonic()
        if progress is not None and now >= next_progress:
            report = None
            if not active:
                pending = shared.job_queue.pending_tasks()
                ahead = pending.index(job.task_id) if job.task_id in pending else 0
                report = (0, f"Waiting in queue ({ahead} ahead)", None)
            elif state.sampling_steps:
                report = ((state.sampling_step, state.sampling_steps), state.job, "steps")
            if report is not None and report != last_report:
                last_report, next_progress = report, now + PROGRESS_PERIOD
                value, desc, unit = report
                progress(value, desc=desc, **({"unit": unit} if unit else {}))
        if active and state.current_image is not None and state.id_live_preview != last_preview \
                and now >= next_preview:
            last_preview = state.id_live_preview
            next_preview = now + max(0.1, shared.opts.live_preview_refresh_period / 1000)
            yield state.current_image
        time.sleep(0.1)
    return job.future.result()

