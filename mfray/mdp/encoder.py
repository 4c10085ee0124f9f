"""The frozen text encoder E of f_psi's input tokens (SPEC section 6): the same at training and at
inference, cached by text. `hashing`: character 1-3-gram counts hashed into `dim` buckets
(scikit-learn's HashingVectorizer), L2-normalised: no model, no download, any language (Weibo is
Chinese), deterministic. It carries a text's words and phrasing, not its meaning: a weak encoder,
named as such wherever f_psi's results are reported."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

ENCODERS = ("hashing",)
CACHE_SIZE = 4096  # texts kept encoded: a step's profiles repeat across steps and events


class HashingEncoder:
    """E(text) -> a `dim`-vector; E("") is the zero vector (no text: no signal)."""

    name = "hashing"

    def __init__(self, dim: int = 256) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        if dim < 8:
            raise ValueError(f"encoder dim must be >= 8, got {dim}")
        self.dim = dim
        self._vectorizer = HashingVectorizer(analyzer="char_wb", ngram_range=(1, 3), n_features=dim,
                                             alternate_sign=False, norm="l2", lowercase=True)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, one row per text (cached)."""
        todo = [t for t in dict.fromkeys(texts) if t and t not in self._cache]
        fresh = dict(zip(todo, self._vectorizer.transform(todo).toarray().astype(np.float32))) if todo else {}
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            if text:
                rows[i] = fresh[text] if text in fresh else self._cache[text]
        for text, row in fresh.items():  # cached after use, so an eviction cannot lose a row needed above
            self._cache[text] = row
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return rows

    def mean(self, texts: Sequence[str]) -> np.ndarray:
        """The mean of E over `texts` (the zero vector for none): a step's profiles as one vector."""
        return self.encode(texts).mean(axis=0) if texts else np.zeros(self.dim, dtype=np.float32)


def build_encoder(name: str, dim: int) -> HashingEncoder:
    """The encoder `name` (one of ENCODERS) with `dim` dimensions."""
    if name != "hashing":
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return HashingEncoder(dim)
