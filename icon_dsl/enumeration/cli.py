"""`icon-dsl enumerate`: list, render, emit and evaluate the table (the command line).

Guarantees: exit 0 on success, 2 on bad usage (an unknown family, a data set that cannot be
read) with a message naming the culprit; the listing goes to stdout or `--output`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..usage import EXIT_ERRORS, bounded_int, positive_int
from .board import write_table
from .candidates import enumerate_methods
from .emit import emit_specs
from .render import RENDERERS
from .space import _DEFAULT_DIVERGENCES


def add_enumerate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enumerate", help="list, emit and evaluate the methods of the table")
    p.add_argument("--format", choices=tuple(RENDERERS), default="table")
    p.add_argument("-o", "--output", metavar="FILE", help="write the listing here, not stdout")
    p.add_argument("--p", nargs="+", metavar="F", help="p families (columns) to keep")
    p.add_argument("--q", nargs="+", metavar="F", help="q families (rows) to keep")
    p.add_argument("--mapper", nargs="+", metavar="M", help="mappers to keep")
    p.add_argument("--modifiers", metavar="M,M", help="cross with modifiers: debias,walk,...")
    p.add_argument("--metrics", metavar="M,M", help="cross q with metrics: euclidean,cosine,dot")
    p.add_argument("--divergences", metavar="D,D", help="default: kl,reverse_kl")
    p.add_argument("--include-rejected", action="store_true", help="list rejected candidates")
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N candidates")
    p.add_argument("--emit", metavar="DIR", help="write every new candidate as DIR/<name>.icon")
    p.add_argument(
        "--evaluate", nargs="?", const="digits", metavar="DATA",
        help="train and score the listed candidates, known and new, against baselines "
        "(DATA: digits, mnist1d or a .npy/.npz/.csv file; default digits)",
    )  # fmt: skip
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N", help="seeds (3)")
    p.add_argument("--budget-minutes", type=float, default=30.0, metavar="M", help="(30)")
    p.add_argument("--jobs", type=positive_int, default=2, metavar="J", help="workers (2)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="every run's epochs")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0, help="the first seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--eval-out", default="runs/enumerate", metavar="DIR", help="results dir")
    p.set_defaults(func=run_command)


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def run_command(args: Any) -> int:
    """`icon-dsl enumerate`: list, render, emit, evaluate. Returns the exit status."""
    try:
        cands = enumerate_methods(
            p_families=args.p,
            q_families=args.q,
            mappers=args.mapper,
            modifiers=_csv(args.modifiers) or (),
            metrics=_csv(args.metrics),
            divergences=_csv(args.divergences) or _DEFAULT_DIVERGENCES,
            limit=args.limit,
            include_rejected=args.include_rejected,
        )
    except ValueError as err:
        print(f"icon-dsl enumerate: error: {err}", file=sys.stderr)
        return 2
    text = RENDERERS[args.format](cands)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(cands)} candidates)", file=sys.stderr)
    elif args.evaluate is None or args.format != "table":
        sys.stdout.write(text)
    if args.emit:
        paths = emit_specs(cands, args.emit)
        print(f"wrote {len(paths)} new specs to {args.emit}/", file=sys.stderr)
    if args.evaluate is not None:
        return _evaluate(cands, args)
    return 0


def _evaluate(cands: Any, args: Any) -> int:
    # the training stack (torch, scikit-learn) loads only for --evaluate
    from ..train.errors import DataError
    from ..train.evaluate import Protocol, evaluate, load_benchmark

    if args.seeds < 1 or args.jobs < 1 or args.budget_minutes <= 0:
        print("icon-dsl enumerate: error: --seeds and --jobs must be >= 1 and --budget-minutes"
              " > 0", file=sys.stderr)  # fmt: skip
        return 2
    try:
        bench = load_benchmark(args.evaluate)  # a bad path fails once here, not per candidate
    except (DataError, ValueError) as err:  # a data error, as in `train`: status 1
        print(f"icon-dsl enumerate: error: {err}", file=sys.stderr)
        return EXIT_ERRORS
    protocol = Protocol(
        data=args.evaluate, seeds=args.seeds, budget_minutes=args.budget_minutes,
        jobs=args.jobs, epochs=args.epochs, first_seed=args.seed, device=args.device,
    )  # fmt: skip
    rows = evaluate(cands, protocol, out=args.eval_out,
                    log=lambda msg: print(msg, file=sys.stderr, flush=True))  # fmt: skip
    write_table(Path(args.eval_out), cands, rows, bench.name)
    print(f"wrote {args.eval_out}/leaderboard.md and leaderboard.json", file=sys.stderr)
    return 0
