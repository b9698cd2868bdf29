"""Errors a generation job raises for the user, on the lowest floor so that every module that
checks a job (processing, admission control) can raise them without importing processing."""


class GenerationError(RuntimeError):
    """A job that cannot run or went wrong; the message is meant for the user."""
