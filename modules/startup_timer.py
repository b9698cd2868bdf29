"""Timings of the program's start-up, for /internal/profile-startup and the sysinfo report."""
import time


class StartupTimer:
    def __init__(self):
        self.start = time.perf_counter()
        self.last = self.start
        self.records: dict[str, float] = {}

    def record(self, name: str) -> None:
        now = time.perf_counter()
        self.records[name] = self.records.get(name, 0.0) + now - self.last
        self.last = now

    def summary(self) -> dict:
        """A1111's shape: {"total": seconds, "records": {phase: seconds}}."""
        return {"total": round(self.last - self.start, 3),
                "records": {name: round(seconds, 3) for name, seconds in self.records.items()}}


startup_timer = StartupTimer()
