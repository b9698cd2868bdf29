"""Textual-inversion embeddings (A1111 module path: modules.textual_inversion.textual_inversion)."""
from modules.textual_inversion.textual_inversion import (  # noqa: F401
    Embedding,
    EmbeddingDatabase,
    EmbeddingLoadError,
    embedding_from_data,
    embedding_to_data,
    load_embedding_file,
    widths_for_model,
)
