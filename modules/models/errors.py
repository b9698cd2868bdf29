"""The one exception type of the model-loading package.

Kept in its own module so that detection, conversion and loading can all raise it without
importing each other.
"""


class ModelLoadError(Exception):
    """A model file or folder cannot be used; the message names the file and the problem."""
