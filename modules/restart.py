"""Stopping and restarting the program (Reload UI, /sdapi/v1/server-stop|restart|kill).

A restart re-executes the program with the same command line in the same process id, so the UI,
scripts and settings are all built afresh; it runs as a job on the queue, so jobs submitted before
it finish first."""
import os
import sys
import time

server = None  # the running uvicorn.Server, set by webui.main()

# The restarted program binds the port again; a short pause lets the HTTP answer reach the client.
ANSWER_GRACE_SECONDS = 0.5


def is_restartable() -> bool:
    """Re-executing needs the program's own command line (not a test harness importing webui)."""
    return server is not None and bool(sys.argv) and os.path.basename(sys.argv[0]) in ("webui.py", "launch.py")


def _reexec():
    time.sleep(ANSWER_GRACE_SECONDS)
    print("Restarting: building the program again with the same command line")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])


def schedule_restart() -> None:
    from modules import shared
    shared.job_queue.submit(_reexec, name="restart")


def stop() -> None:
    """Ask the server to shut down as after Ctrl+C (the running job is interrupted)."""
    from modules import shared
    if shared.state.job:
        shared.state.interrupt()
    if server is not None:
        server.should_exit = True


def kill() -> None:
    time.sleep(ANSWER_GRACE_SECONDS)
    os._exit(0)
