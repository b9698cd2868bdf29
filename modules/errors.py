"""Reporting errors from extensions and scripts without stopping the program (A1111's names)."""
import sys
import threading
import traceback

# The last few errors, oldest first, for Settings > Sysinfo's "Exceptions" (A1111 keeps five).
exception_records: list[dict] = []
RECORDS_KEPT = 5
_records_lock = threading.Lock()
_last_recorded: list = [None]  # the exception object last recorded: report + display of one error count once


def format_exception(e: BaseException, tb) -> dict:
    """{"exception": text, "traceback": [["file, line N, function", source line], ...]}."""
    frames = traceback.extract_tb(tb)
    return {"exception": str(e),
            "traceback": [[f"{frame.filename}, line {frame.lineno}, {frame.name}", frame.line] for frame in frames]}


def record_exception(e: BaseException | None = None) -> None:
    """Keep `e` (default: the exception being handled) among the recorded ones."""
    if e is None:
        e = sys.exc_info()[1]
    if e is None:
        return
    with _records_lock:
        if _last_recorded[0] is e:
            return
        _last_recorded[0] = e
        exception_records.append(format_exception(e, e.__traceback__))
        del exception_records[:-RECORDS_KEPT]


def get_exceptions() -> list[dict]:
    """The recorded exceptions, newest first."""
    with _records_lock:
        return list(reversed(exception_records))


def report(message: str, *, exc_info: bool = False) -> None:
    """Print `message` (and the current exception's traceback) to stderr."""
    lines = [message]
    if exc_info:
        lines.append(traceback.format_exc().rstrip())
        record_exception()
    print("\n".join(lines), file=sys.stderr)


def display(e: Exception, task: str, *, full_traceback: bool = False) -> None:
    """Report `e`, raised while doing `task`."""
    record_exception(e)
    print(f"Error {task}: {type(e).__name__}: {e}", file=sys.stderr)
    print("".join(traceback.format_exception(e)).rstrip(), file=sys.stderr)


def print_error_explanation(message: str) -> None:
    print(message.strip(), file=sys.stderr)
