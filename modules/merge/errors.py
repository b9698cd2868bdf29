"""The one error type of the merge engine: its message is meant for the user as it is."""


class MergeError(ValueError):
    pass
