"""Helpers shared by the bench scripts."""
import threading
import time


def in_own_thread(fn):
    """Run fn() in a short-lived thread and return its result (or raise its exception).

    With torch's OpenMP backend, every thread that runs a parallel op keeps its own team of OpenMP
    threads. Once there are more of those than cores, OpenMP stops spin-waiting between parallel
    regions and each of the many small regions of a tiny model pays a wake-up: on 2 cores a tiny-model
    step became about 4x slower (4 ms -> 16 ms); even building a diffusers scheduler counts. The web UI
    runs all model work on its one job-queue worker; a bench must too. Set-up before the web UI exists
    (building the tiny checkpoint) runs in a thread that exits, which frees its team; everything after
    goes through the job queue.
    """
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            result["error"] = e

    thread = threading.Thread(target=target, name="bench-setup")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def timed(fn) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_times(sides: dict, rounds: int, *, show_each: bool = False) -> dict[str, list[float]]:
    """Seconds of each timed call of each side, `rounds` calls a side, the sides taking turns
    (A, B, A, B, ...) so that the load of a shared machine falls on all of them alike. One untimed
    warm-up call of each side comes first. `sides`: name -> a function of no arguments."""
    for fn in sides.values():
        fn()
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            times[name].append(timed(fn))
            if show_each:
                print(f"  {name}: {times[name][-1]:.3f} s", flush=True)
    return times


def start_tiny_sd1(prefix: str, extra_files=None):
    """A temporary data folder with a tiny random-weight SD1 checkpoint (and whatever
    `extra_files(data_dir)` writes there), the web UI initialized on it and the model loaded on the
    job queue. Returns (data_dir, model)."""
    import os
    import tempfile

    import webui
    from modules import cmd_args, shared
    from modules.tiny_models import write_tiny_checkpoint

    data_dir = tempfile.mkdtemp(prefix=prefix)
    folder = os.path.join(data_dir, "models", "Stable-diffusion")
    os.makedirs(folder)
    in_own_thread(lambda: write_tiny_checkpoint("sd1", os.path.join(folder, "tiny-sd1.safetensors")))
    if extra_files is not None:
        in_own_thread(lambda: extra_files(data_dir))
    webui.initialize(cmd_args.parse_args(["--data-dir", data_dir]))
    return data_dir, shared.job_queue.run(shared.model_holder.ensure_for_job)


def euler_scheduler():
    """diffusers' Euler with SD1's schedule, spaced as our Euler is. Build it on the job queue's
    worker: even its set-up runs torch ops (see in_own_thread)."""
    from diffusers import EulerDiscreteScheduler
    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  timestep_spacing="linspace", num_train_timesteps=1000, steps_offset=1)
