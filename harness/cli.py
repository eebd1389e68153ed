"""Command line: ``unet-ablate list | profile | run | report`` (also ``python -m harness``).

User mistakes (an unknown name, an invalid spec, a bad data folder) print one line on
stderr and exit with status 2; nothing is half-written.
"""
from __future__ import annotations

import argparse
import json
import sys

import variants


class UserError(ValueError):
    """A mistake in what the user asked for: reported as one line, exit status 2."""


def _parse_spec(name: str, in_channels: int, classes: int):
    return variants.parse(name).replace(in_channels=in_channels, classes=classes)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [{"name": n, "spec_name": s.name, "note": variants.PRESET_NOTES.get(n, ""),
             "spec": s.to_dict()} for n, s in variants.PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['spec_name']}")
        print(f"{'':<{width}}  {r['note']}")
    print("\nAny spec can be written as its readable name; tokens left out take the "
          "baseline's value, e.g. `unet-bilinear`, `unetpp-ds-w16-L2`, `smp-unet-resnet18`.")
    print("Axes: " + "; ".join(f"{a}: {'|'.join(v)}" for a, v in variants.AXES.items())
          + "; w<width> d<depth> in<C> k<classes> ds L<k>")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .cost import MAC_CONVENTION, profile

    spec = _parse_spec(args.name, args.in_channels, args.classes)
    h, w = args.size
    p = profile(spec, h, w)  # a crop-mode size error comes from the model's input check
    if args.json:
        print(json.dumps(p))
        return 0
    print(f"{args.name}: {p['name']}")
    print(f"  parameters   {p['params']:,} ({p['params'] / 1e6:.2f} M)")
    print(f"  MACs         {p['macs']:,} ({p['macs'] / 1e9:.2f} G) for one {h}x{w} image")
    print(f"  MACs (thop)  {p['macs_thop']:,} ({p['macs_thop'] / p['macs'] - 1:+.2%} vs headline)")
    print(f"  input        {tuple(p['input_shape'])}")
    print(f"  output       {tuple(p['output_shape'])}")
    print(f"  {MAC_CONVENTION}")
    return 0


def _size(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unet-ablate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("list", help="list the presets and their specs")
    q.add_argument("--json", action="store_true", help="one JSON list")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("profile", help="parameters, MACs and shapes of one variant")
    q.add_argument("name", help="a preset or a readable spec name")
    q.add_argument("--in-channels", type=_size, default=3, help="default: 3")
    q.add_argument("--classes", type=_size, default=1, help="default: 1")
    q.add_argument("--size", type=_size, nargs=2, metavar=("H", "W"), default=(256, 256))
    q.add_argument("--json", action="store_true", help="one JSON object")
    q.set_defaults(func=cmd_profile)

    try:  # the sweep runner and the report add their own commands
        from .runner import add_run_command
        add_run_command(sub)
    except ImportError:
        pass
    try:
        from .report import add_report_command
        add_report_command(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        print(f"unet-ablate: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unet-ablate: interrupted", file=sys.stderr)
        return 130
