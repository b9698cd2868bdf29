"""Running a queue job from a Gradio handler while showing its progress."""
import time

import gradio as gr

from modules import shared


def run_with_progress(fn, name: str, progress: gr.Progress | None = None, task_id: str | None = None):
    """Submit fn to the job queue and wait, reporting 'Step i/n' while it samples."""
    job = shared.job_queue.submit(fn, name=name, task_id=task_id)
    state = shared.state
    while not job.future.done():
        if progress is not None:
            if state.task_id != job.task_id:
                position = shared.job_queue.pending_tasks().index(job.task_id) \
                    if job.task_id in shared.job_queue.pending_tasks() else 0
                progress(0, desc=f"Waiting in queue ({position} ahead)")
            elif state.sampling_steps:
                progress((state.sampling_step, state.sampling_steps), desc=state.job, unit="steps")
        time.sleep(0.1)
    return job.future.result()
