"""Command line over the same API the app uses.

    python -m explorer list
    python -m explorer summary resnet50 --input 224 --format table|csv|markdown|json
    python -m explorer rf resnet18 resnet34 resnet50 resnet101 [--input 224]
    python -m explorer compare mobilenet_v2 efficientnet_b0 resnet18 [--input 224]
    python -m explorer kinds

A person's mistake (unknown model, impossible input) prints one sentence and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys

from . import catalog
from .analysis import GLOBAL, AnalysisError, analyze
from .dtypes import ALL_DTYPES as DTYPES
from .fields import fmt_pair, fmt_rf



class UsageError(Exception):
    pass


def parse_input(text: str | None, name: str) -> tuple:
    """'224' → (C, 224, 224) with the model's channels; '160x224' → (C, 160, 224); '1x32x32' → (1, 32, 32)."""
    default = catalog.info(name).input_size
    if text is None:
        return default
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise UsageError(f"--input '{text}' is not a size; write 224, 160x224 or 3x224x224.") from None
    if len(parts) == 1:
        return (default[0], parts[0], parts[0])
    if len(parts) == 2:
        return (default[0], *parts)
    if len(parts) == 3:
        return tuple(parts)
    raise UsageError(f"--input '{text}' has too many parts; write 224, 160x224 or 3x224x224.")


def _fmt_rf(v) -> str:
    if v is None:
        return "—"
    return fmt_rf(None if v == GLOBAL else v, v == GLOBAL, sep=False)


def cmd_list(args) -> str:
    rows = [f"{'name':28s} {'family':16s} {'year':>4s} {'input':>11s} {'params':>13s} {'GMACs':>9s} {'acc@1':>6s}"]
    for n in catalog.names():
        i = catalog.info(n)
        shape = " and ".join("×".join(map(str, s)) for s in i.input_shapes)  # RAFT: two frames
        rows.append(f"{n:28s} {i.family:16s} {i.year:4d} {shape:>11s} "
                    f"{(f'{i.num_params:,}' if i.num_params else '—'):>13s} "
                    f"{(f'{i.gmacs:.3f}' if i.gmacs else '—'):>9s} {(f'{i.acc1:.1f}' if i.acc1 else '—'):>6s}")
    return "\n".join(rows)


def cmd_summary(args) -> str:
    shape = parse_input(args.input, args.model)
    a = analyze(args.model, shape, dtype=DTYPES[args.dtype])
    if args.format == "csv":
        return a.to_csv().rstrip("\n")
    if args.format == "markdown":
        return a.to_markdown()
    if args.format == "json":
        return a.to_json()
    mb = 1e6
    lines = [
        a.to_table(), "",
        f"{a.model_name} at {'×'.join(map(str, a.input_shape))} ({a.dtype})",
        f"  parameters           {a.params:>18,}  (trainable {a.trainable_params:,}, weights {a.weights_total:,}, "
        f"biases {a.biases_total:,})",
        f"  MACs                 {a.macs:>18,}  ({a.gmacs:.3f} G)",
        f"  FLOPs (2 × MACs)     {a.flops:>18,}  ({a.gflops:.3f} G)",
        f"  activations / image  {a.activations:>18,}  ({a.activation_bytes / mb:.2f} MB; input + conv/pool/fc outputs)",
        f"  training memory      {(a.training_bytes or 0) / mb:>15.2f} MB  (saved for backward, per image)",
        f"  weight memory        {a.weight_bytes / mb:>15.2f} MB",
    ]
    lines += [f"  note: {n}" for n in a.notes]
    return "\n".join(lines)


def cmd_rf(args) -> str:
    analyses = {n: analyze(n, parse_input(args.input, n), training_memory=False) for n in args.models}
    stages: list[str] = []
    for a in analyses.values():
        for s in a.stages():
            if s.name not in stages:
                stages.append(s.name)
    head = ["stage"] + list(analyses)
    rows = []
    for st in stages:
        row = [st] + [_fmt_rf(a.receptive_field(st)) if st in a.modules else "—" for a in analyses.values()]
        # Stages that change no field (BatchNorm, ReLU, the fc after global pooling) only repeat the row above.
        if args.all or not rows or any(c not in ("—", p) for c, p in zip(row[1:], rows[-1][1:])):
            rows.append(row)
    out = _table(head, rows)
    out.append("")
    out.append("Theoretical receptive field in input pixels at the output of each stage"
               " (\"global\": pooling, attention or a gate reaches every pixel).")
    return "\n".join(out)


def _table(head: list, rows: list) -> list:
    """A Markdown table as lines, the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))) + " |"
    return [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in rows]


def cmd_compare(args) -> str:
    from .compare import align

    analyses = {n: analyze(n, parse_input(args.input, n), training_memory=False) for n in args.models}
    strides, per = align(analyses)
    cell = lambda e: "—" if e is None else f"{e.stage} ({e.channels} ch, RF {fmt_rf(e.rf, e.is_global, sep=False)})"
    rows = [[fmt_pair(s, sep=False)] + [cell(per[n].get(s)) for n in analyses] for s in strides]
    out = _table(["stride"] + list(analyses), rows)
    out.append("")
    out.append("Stages aligned by the stride of the map they produce (not by name): each model's stage that "
               "produces that stride last, its channels and receptive field; — : no map at that stride.")
    return "\n".join(out)


def cmd_kinds(args) -> str:
    from . import components

    return components.kinds_markdown()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m explorer", description="CNN Architecture Explorer")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the catalog")
    s = sub.add_parser("summary", help="per-layer table and totals")
    s.add_argument("model")
    s.add_argument("--input", help="224, 160x224 or 3x224x224 (default: the model's own)")
    s.add_argument("--format", choices=["table", "csv", "markdown", "json"], default="table")
    s.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    r = sub.add_parser("rf", help="receptive field per stage, side by side")
    r.add_argument("models", nargs="+")
    r.add_argument("--input", help="input size for every model (default: each model's own)")
    r.add_argument("--all", action="store_true", help="also list stages that leave the field unchanged")
    c = sub.add_parser("compare", help="stages side by side, aligned by stride")
    c.add_argument("models", nargs="+")
    c.add_argument("--input", help="input size for every model (default: each model's own)")
    sub.add_parser("kinds", help="the block, neck and head kinds a composition can use (Markdown)")
    args = p.parse_args(argv)
    try:
        out = {"list": cmd_list, "summary": cmd_summary, "rf": cmd_rf, "compare": cmd_compare,
               "kinds": cmd_kinds}[args.command](args)
    except (catalog.UnknownModelError, AnalysisError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
