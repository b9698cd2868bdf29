"""Progress of the job that owns the GPU: what A1111 calls `shared.state`.

Only the queue worker writes the job fields; any thread may read them (progress polling) or ask
for an interrupt or skip.
"""
import threading
import time


class Interrupted(Exception):
    """Raised inside a job when the user pressed Interrupt (or Skip for the current batch)."""


# Live previews are rendered only while someone has asked for one this recently (a UI watcher polls
# every 0.1 s, API clients call /progress): nobody watching, no preview cost in the sampling loop.
PREVIEW_INTEREST_SECONDS = 3.0


class State:
    def __init__(self):
        self._lock = threading.Lock()
        self.server_start = time.time()
        self._preview_wanted_at = -float("inf")
        self.reset()

    def reset(self):
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.processing_has_refined_job_count = False
        self.job_timestamp = "0"
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.textinfo = None
        self.time_start = None
        self.task_id = None

    # -- requests from other threads ------------------------------------------------------
    def interrupt(self):
        if self.job:
            self.interrupted = True

    def skip(self):
        if self.job:
            self.skipped = True

    def stop_generating(self):
        self.stopping_generation = True

    def want_preview(self):
        """A reader (UI watcher, /progress) would show a live preview: render them for a while."""
        self._preview_wanted_at = time.monotonic()

    def preview_wanted(self) -> bool:
        return time.monotonic() - self._preview_wanted_at < PREVIEW_INTEREST_SECONDS

    # -- used by the worker -------------------------------------------------------------------
    def begin(self, job: str = "(unknown)", task_id: str | None = None):
        with self._lock:
            self.reset()
            self.job = job
            self.task_id = task_id
            self.job_count = -1
            self.job_timestamp = time.strftime("%Y%m%d%H%M%S")
            self.time_start = time.time()

    def end(self):
        with self._lock:
            self.reset()

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0
        self.skipped = False

    def set_current_image(self, image) -> None:
        """A new live preview: readers compare id_live_preview to skip one they already have."""
        self.current_image = image
        self.current_image_sampling_step = self.sampling_step
        self.id_live_preview += 1

    def check_stop(self):
        """Called between sampling steps: raises Interrupted when asked to stop or skip."""
        if self.interrupted or self.skipped:
            raise Interrupted()

    def progress(self) -> float:
        if not self.job or self.job_count <= 0:
            return 0.0
        value = 0.01 + self.job_no / self.job_count
        if self.sampling_steps > 0:
            value += self.sampling_step / self.sampling_steps / self.job_count
        return min(value, 1.0)

    def eta(self) -> float:
        progress = self.progress()
        if not self.time_start or progress <= 0:
            return 0.0
        elapsed = time.time() - self.time_start
        return elapsed / progress - elapsed

    def dict(self) -> dict:
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count if self.job_count > 0 else 0,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }
