"""``dna-depth``: the command-line entry point. Every subcommand lives in ``dna_depth_core.commands``."""
from __future__ import annotations

import argparse
import importlib
import sys

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
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # Library errors name the problem; show them without a traceback.
        print(f"dna-depth {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
