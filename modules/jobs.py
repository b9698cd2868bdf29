"""One queue, one worker: every job that touches a model runs here, in submission order.

The UI and the API both submit and then wait for their job's result, so a long API request and a
click in the browser take turns instead of fighting over the GPU.
"""
import concurrent.futures
import queue
import random
import string
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from modules.state import State


def new_task_id(kind: str) -> str:
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({kind}-{suffix})"


@dataclass
class Job:
    task_id: str
    name: str
    fn: Callable[[], Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class JobQueue:
    def __init__(self, state: State):
        self.state = state
        self._queue: queue.Queue[Job] = queue.Queue()
        self._pending: list[str] = []
        self._finished: list[str] = []
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="job-worker", daemon=True)
        self._worker.start()

    def submit(self, fn: Callable[[], Any], name: str = "job", task_id: str | None = None) -> Job:
        job = Job(task_id=task_id or new_task_id(name), name=name, fn=fn)
        with self._lock:
            self._pending.append(job.task_id)
        self._queue.put(job)
        return job

    def run(self, fn: Callable[[], Any], name: str = "job", task_id: str | None = None) -> Any:
        """Run fn on the worker and wait for its result (inline when already on the worker)."""
        if threading.current_thread() is self._worker:
            return fn()
        return self.submit(fn, name, task_id).future.result()

    def pending_tasks(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def status(self, task_id: str) -> str:
        """'queued', 'active', 'completed' or 'unknown'."""
        with self._lock:
            if task_id in self._finished:
                return "completed"
            if task_id in self._pending:
                return "active" if self.state.task_id == task_id else "queued"
        return "unknown"

    def _run(self):
        while True:
            job = self._queue.get()
            self.state.begin(job.name, job.task_id)
            outcome, failure, ran = None, None, False
            try:
                if job.future.set_running_or_notify_cancel():
                    ran = True
                    try:
                        outcome = job.fn()
                    except BaseException as e:  # handed to the waiting caller, worker lives on
                        failure = e
            finally:
                self.state.end()
                with self._lock:
                    self._pending.remove(job.task_id)
                    self._finished.append(job.task_id)
                    del self._finished[:-100]
            # The caller wakes only after the task counts as completed, so a progress poll
            # made right after the response never sees it still active.
            if ran:
                if failure is not None:
                    job.future.set_exception(failure)
                else:
                    job.future.set_result(outcome)
