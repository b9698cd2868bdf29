class PostprocessingError(ValueError):
    """Bad postprocessing arguments (API: 422); the message says what to change."""
