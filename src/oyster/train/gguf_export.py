"""Trained checkpoint → GGUF, so the `embedded:PATH.gguf` backend (llama.cpp) serves it.

The conversion itself is llama.cpp's own `convert_hf_to_gguf.py`, the converter the
llama.cpp project maintains. The llama-cpp-python wheel does not ship it, but the source
distribution of the same version does (`vendor/llama.cpp/`): `fetch_converter()` downloads
that sdist with pip (PyPI, the ordinary client), keeps the converter, its bundled `gguf-py`
and licence in a cache directory, and installs the few modules the script imports at
start-up beside it (not into the environment: `mistral-common` pins numpy below what we
use). We run the script as a subprocess; nothing of it is copied here.

Output types: `f32`, `f16`, `bf16` and `q8_0` come straight from the converter; `q4_1`
(the packaged SmolLM2's format), `q4_k_m` and `q6_k` are quantized from an f32 conversion
with llama.cpp's own quantizer through llama-cpp-python.

Two things we check because the converter of llama-cpp-python 0.3.16 predates
transformers 5: it reads `rope_theta` from the top level of the config, where
transformers 5 writes `rope_parameters.rope_theta`, so its file would silently fall back
to llama.cpp's default RoPE base (10 000 instead of SmolLM2's 100 000) and the model
would ramble. `export_gguf` adds the missing key with gguf's metadata copier and refuses
configs whose RoPE scaling it cannot carry over.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from oyster.errors import InputError, OysterError

OutType = Literal["f32", "f16", "bf16", "q8_0", "q4_1", "q4_k_m", "q6_k"]
OUT_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q4_1", "q4_k_m", "q6_k")
#: Types the converter writes itself; the others go through llama.cpp's quantizer.
CONVERTER_TYPES = frozenset({"f32", "f16", "bf16", "q8_0"})
#: llama.cpp `llama_ftype` names for the quantized types (attributes of `llama_cpp`).
QUANTIZE_FTYPES = {"q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                   "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
DEFAULT_OUT_TYPE: OutType = "f16"

CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
#: What we keep from the sdist's `vendor/llama.cpp/` (the script, its gguf-py, the licence).
_KEEP = (CONVERTER_SCRIPT, "gguf-py/", "LICENSE")
#: Modules `convert_hf_to_gguf.py` imports at start-up that our environment lacks, pinned,
#: installed with --no-deps into the converter's own `deps/` directory.
CONVERTER_DEPS = ("mistral-common==1.13.1", "sentencepiece==0.2.3", "tiktoken==0.14.0",
                  "pycountry==26.2.16", "pydantic-extra-types==2.11.1")
CACHE_ENV = "OYSTER_GGUF_CONVERTER"


class ExportError(OysterError):
    """The converter or the quantizer failed, or the written file does not load."""


class Converter(BaseModel):
    """Where llama.cpp's converter lies: the script, and a directory of modules it needs."""

    model_config = ConfigDict(frozen=True)

    script: Path
    deps: Path | None
    source: str


class ExportResult(BaseModel):
    """What `export_gguf` wrote."""

    model_config = ConfigDict(frozen=True)

    source: Path
    out: Path
    out_type: str
    bytes: int
    sha256: str
    tensors: int
    metadata_fixes: dict[str, float]
    converter: str
    wall_s: float


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        raise InputError("llama-cpp-python is not installed; the GGUF converter comes from "
                         "its source distribution") from None


def default_converter_dir() -> Path:
    """The cache directory for the converter of the installed llama-cpp-python version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "oyster" / f"gguf-converter-llama-cpp-python-{llama_cpp_version()}"


def find_converter(path: str | Path | None = None) -> Converter:
    """The converter at `path` (the script, or a directory holding it), else at
    `$OYSTER_GGUF_CONVERTER`, else in the default cache. Raises `InputError` naming the
    command that fetches it."""
    given = path or os.environ.get(CACHE_ENV)
    where = Path(given).expanduser() if given else default_converter_dir()
    script = where if where.suffix == ".py" else where / CONVERTER_SCRIPT
    if not script.is_file():
        raise InputError(f"llama.cpp's GGUF converter is not at {script}; fetch it once with "
                         f"`oyster train fetch-converter` (downloads the llama-cpp-python "
                         f"source distribution from PyPI) or pass --converter PATH")
    deps = script.parent / "deps"
    return Converter(script=script, deps=deps if deps.is_dir() else None, source=str(script))


def extract_converter(sdist: Path, dest: Path) -> Path:
    """Unpack the converter, its gguf-py and licence from a llama-cpp-python sdist into
    `dest`; returns the script path. Raises `InputError` if the archive lacks it."""
    dest.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    with tarfile.open(sdist, "r:*") as tar:
        for member in tar.getmembers():
            _, sep, rel = member.name.partition("/vendor/llama.cpp/")
            if not sep or not any(rel == k or (k.endswith("/") and rel.startswith(k))
                                  for k in _KEEP):
                continue
            if not (member.isfile() or member.isdir()):
                continue
            member.name = rel
            tar.extract(member, dest, filter="data")
            kept.append(rel)
    script = dest / CONVERTER_SCRIPT
    if CONVERTER_SCRIPT not in kept:
        raise InputError(f"{sdist}: no vendor/llama.cpp/{CONVERTER_SCRIPT} in this archive")
    return script


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise ExportError(f"`{' '.join(cmd[2:])}` failed:\n{tail}")


def fetch_converter(dest: str | Path | None = None) -> Converter:
    """Download the llama-cpp-python sdist matching the installed version (pip, PyPI),
    keep its converter in `dest` (default: the cache) and install the converter's start-up
    imports into `dest/deps`. Idempotent: an existing converter is kept."""
    version = llama_cpp_version()
    target = Path(dest).expanduser() if dest else default_converter_dir()
    if (target / CONVERTER_SCRIPT).is_file() and (target / "deps").is_dir():
        return find_converter(target)
    with tempfile.TemporaryDirectory(prefix="oyster-sdist-") as tmp:
        _pip("download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-python",
             f"llama-cpp-python=={version}", "--dest", tmp)
        archives = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not archives:
            raise ExportError(f"pip downloaded no llama-cpp-python {version} source archive")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        extract_converter(archives[0], staging)
    _pip("install", "--quiet", "--no-deps", "--target", str(staging / "deps"), *CONVERTER_DEPS)
    (staging / "SOURCE.json").write_text(json.dumps({
        "from": f"llama-cpp-python=={version} source distribution, vendor/llama.cpp",
        "deps": list(CONVERTER_DEPS)}, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return find_converter(target)


def check_checkpoint(run_dir: Path) -> dict[str, Any]:
    """A servable transformers checkpoint (config, safetensors weights, tokenizer); returns
    its config. A run dir that never finished, or a LoRA adapter alone, gets a clear error."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory (expected a training run's output dir)")
    if not (run_dir / "config.json").is_file():
        if (run_dir / "adapter_config.json").is_file():
            raise InputError(f"{run_dir}: a LoRA adapter alone; export the run dir above it, "
                             "which holds the merged model")
        ckpts = sorted(run_dir.glob("checkpoint-*"))
        hint = (f"; the run has {len(ckpts)} checkpoint(s) but no final model: finish it "
                "with `--resume`") if ckpts else ""
        raise InputError(f"{run_dir}: no config.json, not a transformers checkpoint{hint}")
    if not list(run_dir.glob("*.safetensors")):
        raise InputError(f"{run_dir}: no *.safetensors weights")
    if not (run_dir / "tokenizer.json").is_file() and not (run_dir / "tokenizer.model").is_file():
        raise InputError(f"{run_dir}: no tokenizer (tokenizer.json or tokenizer.model)")
    try:
        config: dict[str, Any] = json.loads((run_dir / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{run_dir / 'config.json'}: unreadable ({exc})") from None
    return config


def rope_fixes(config: dict[str, Any], fields: dict[str, Any], arch: str) -> dict[str, float]:
    """GGUF keys the converter should have written from `config` but did not.

    `fields` maps GGUF keys to values. Raises `ExportError` for RoPE scaling the file
    cannot be fixed up for."""
    rope = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", rope.get("rope_theta"))
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ("default", None) and f"{arch}.rope.scaling.type" not in fields:
        raise ExportError(f"the config's RoPE scaling ({rope_type}) did not reach the GGUF "
                          "file; this converter version cannot carry it (use a newer one "
                          "with --converter)")
    key = f"{arch}.rope.freq_base"
    if theta is None or key in fields:
        return {}
    return {key: float(theta)}


def _gguf_fields(path: Path) -> tuple[str, dict[str, Any], int]:
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {name: f.contents() for name, f in reader.fields.items()
              if not name.startswith("GGUF.")}
    return str(fields.get("general.architecture", "")), fields, len(reader.tensors)


def add_metadata(src: Path, dst: Path, values: dict[str, float]) -> None:
    """Copy GGUF `src` to `dst` with float32 keys added (gguf's own metadata copier)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    new = {k: MetadataDetails(gguf.GGUFValueType.FLOAT32, v) for k, v in values.items()}
    with _quiet_fd(2):  # gguf draws a tqdm bar on stderr
        copy_with_new_metadata(reader, writer, new, [])


@contextmanager
def _quiet_fd(fd: int) -> Iterator[Path]:
    """Send file descriptor `fd` (C-level output too) to a temporary log; yields its path."""
    with tempfile.NamedTemporaryFile(prefix="oyster-export-", suffix=".log", delete=False) as log:
        saved = os.dup(fd)
        sys.stderr.flush()
        os.dup2(log.fileno(), fd)
        try:
            yield Path(log.name)
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def quantize(src: Path, dst: Path, out_type: str, threads: int = 1) -> None:
    """llama.cpp's quantizer (through llama-cpp-python) from an f32/f16 GGUF."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZE_FTYPES[out_type])
    params.nthread = threads
    with _quiet_fd(2) as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
    if rc != 0:
        tail = "\n".join(log.read_text("utf-8", "replace").splitlines()[-6:])
        raise ExportError(f"llama.cpp quantization to {out_type} failed (code {rc}):\n{tail}")
    log.unlink(missing_ok=True)


def run_converter(converter: Converter, run_dir: Path, out: Path, out_type: str) -> None:
    env = dict(os.environ)
    if converter.deps is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(converter.deps),
                                                        env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(converter.script), str(run_dir), "--outfile", str(out),
           "--outtype", out_type]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode or not out.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                 if "torch.float32 -->" not in ln]
        tail = "\n".join(lines[-12:])
        raise ExportError(f"{converter.script.name} failed on {run_dir} "
                          f"(exit {proc.returncode}):\n{tail}")


def smoke_load(path: Path) -> list[float]:
    """Load the file with llama.cpp and run one short prompt: the last token's logits (which
    it returns) must all be finite."""
    from llama_cpp import Llama

    with _quiet_fd(2) as log:
        try:
            # logits_all: llama-cpp-python writes `scores` only then; without it the array
            # is never filled, and this check read uninitialised memory (a flaky failure)
            llm = Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False,
                        logits_all=True)
            tokens = llm.tokenize(b"Hello", add_bos=True, special=False)
            llm.eval(tokens)
            scores = [float(x) for x in llm.scores[llm.n_tokens - 1]]
            llm.close()
        except (ValueError, RuntimeError) as exc:
            tail = "\n".join(log.read_text("utf-8", "replace").splitlines()[-6:])
            raise ExportError(f"{path.name} was written but llama.cpp cannot run it "
                              f"({exc}):\n{tail}") from None
    log.unlink(missing_ok=True)
    if not all(math.isfinite(x) for x in scores):
        raise ExportError(f"{path.name}: llama.cpp produced non-finite logits")
    return scores


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_gguf(run_dir: str | Path, out: str | Path, out_type: str = DEFAULT_OUT_TYPE, *,
                converter: str | Path | None = None, overwrite: bool = False) -> ExportResult:
    """Write the checkpoint in `run_dir` (a `train sft|orpo` output, LoRA already merged, or
    a `convert-embedded` dir) as one GGUF file that `embedded:OUT` serves.

    The file is built in a temporary directory beside `out`, checked (metadata, a llama.cpp
    load and one forward pass) and only then moved into place."""
    import time

    start = time.perf_counter()
    src = Path(run_dir).expanduser()
    dst = Path(out).expanduser()
    if out_type not in OUT_TYPES:
        raise InputError(f"--outtype {out_type!r}: use one of {', '.join(OUT_TYPES)}")
    config = check_checkpoint(src)
    if dst.exists() and not overwrite:
        raise InputError(f"{dst}: exists; pass --overwrite to replace it")
    if dst.is_dir():
        raise InputError(f"{dst}: is a directory; give a file name ending in .gguf")
    conv = find_converter(converter)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=dst.parent) as tmp_s:
        tmp = Path(tmp_s)
        first = "f32" if out_type not in CONVERTER_TYPES else out_type
        converted = tmp / f"model-{first}.gguf"
        run_converter(conv, src, converted, first)
        arch, fields, _ = _gguf_fields(converted)
        fixes = rope_fixes(config, fields, arch)
        if fixes:
            fixed = tmp / f"model-{first}-fixed.gguf"
            add_metadata(converted, fixed, fixes)
            converted.unlink()
            converted = fixed
        final = converted
        if out_type not in CONVERTER_TYPES:
            final = tmp / f"model-{out_type}.gguf"
            quantize(converted, final, out_type)
        _, fields, n_tensors = _gguf_fields(final)
        missing = [k for k in fixes if k not in fields]
        if missing:
            raise ExportError(f"{final.name}: metadata {missing} lost on the way")
        smoke_load(final)
        final.replace(dst)
    return ExportResult(source=src, out=dst, out_type=out_type, bytes=dst.stat().st_size,
                        sha256=_sha256(dst), tensors=n_tensors, metadata_fixes=fixes,
                        converter=conv.source, wall_s=round(time.perf_counter() - start, 2))
