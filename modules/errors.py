"""Reporting errors from extensions and scripts without stopping the program (A1111's names)."""
import sys
import traceback


def report(message: str, *, exc_info: bool = False) -> None:
    """Print `message` (and the current exception's traceback) to stderr."""
    lines = [message]
    if exc_info:
        lines.append(traceback.format_exc().rstrip())
    print("\n".join(lines), file=sys.stderr)


def display(e: Exception, task: str, *, full_traceback: bool = False) -> None:
    """Report `e`, raised while doing `task`."""
    print(f"Error {task}: {type(e).__name__}: {e}", file=sys.stderr)
    print("".join(traceback.format_exception(e)).rstrip(), file=sys.stderr)


def print_error_explanation(message: str) -> None:
    print(message.strip(), file=sys.stderr)
