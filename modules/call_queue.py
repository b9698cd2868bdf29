"""A1111's call_queue names. Our job queue (shared.job_queue) orders all model work; these wrappers
run an extension's UI callback as a job on it."""
import functools
import html
import threading

from modules import errors, shared


class _QueueLock:
    """`with queue_lock:` — extensions use it to keep model work from overlapping; it holds a plain
    lock (model work itself belongs on shared.job_queue)."""

    def __init__(self):
        self._lock = threading.RLock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def acquire(self, *args, **kwargs):
        return self._lock.acquire(*args, **kwargs)

    def release(self):
        self._lock.release()


queue_lock = _QueueLock()


def wrap_queued_call(func):
    """`func` runs as a job on the queue (the caller waits for its result)."""
    @functools.wraps(func)
    def f(*args, **kwargs):
        return shared.job_queue.run(lambda: func(*args, **kwargs), name=getattr(func, "__name__", "extension"))
    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    """As wrap_queued_call; an exception becomes an error message in the last output (A1111 shape)."""
    @functools.wraps(func)
    def f(*args, **kwargs):
        try:
            return wrap_queued_call(func)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - shown to the user instead of a dead event
            errors.record_exception(e)
            message = f"<div class='error'>{html.escape(type(e).__name__)}: {html.escape(str(e))}</div>"
            return [*(extra_outputs or [None]), "", message]
    return f


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    return func
