"""The ``report`` subcommand of ``unet-ablate`` (kept light: the report modules load on use)."""
from __future__ import annotations

import argparse
import time


def cmd_report(args: argparse.Namespace) -> int:
    from .build import build_report

    start = time.perf_counter()
    out = build_report(args.results_dir, args.out)
    print(f"report: {out / 'index.md'} ({time.perf_counter() - start:.1f} s)")
    return 0


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Register ``report RESULTS_DIR [--out DIR]`` on an argparse subparsers object."""
    p = subparsers.add_parser("report", help="tables and figures from a results folder (never trains)",
                              description="Build tables (md, tex, csv), figures (pdf, png) and "
                                          "index.md from the run records of a results folder.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder written by `unet-ablate run`")
    p.add_argument("--out", metavar="DIR", default=None, help="report folder (default: reports/<sweep>)")
    p.set_defaults(func=cmd_report)
    return p
