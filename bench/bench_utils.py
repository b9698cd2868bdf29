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


def best_of(fn, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
