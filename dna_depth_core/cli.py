"""``dna-depth``: the command-line entry point. Every subcommand lives in ``dna_depth_core.commands``."""
from __future__ import annotations

import argparse
import importlib
import sys

from dna_depth_core.io.errors import one_line

# One module per subcommand, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "profile",
    "convert_official",
    "predict",
    "synth",
    "export_gt",
    "splits",
    "train",
    "evaluate",
    "export_onnx",
    "guard",
    "bench",
    "bag_info",
    "bag_extract",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dna-depth",
        description="DNA-Depth: lightweight self-supervised monocular depth estimation. "
        "Run `dna-depth COMMAND --help` for the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod_name in COMMAND_MODULES:
        mod = importlib.import_module(f"dna_depth_core.commands.{mod_name}")
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as exc:
        # Library errors name the problem (and the file); show them in one line, without a traceback. OSError:
        # files the command cannot open or write (missing, permissions, disk full).
        print(f"dna-depth {args.command}: error: {one_line(str(exc), 2000)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
