"""Command line: ``python -m sensitivity COMMAND ...`` (serve, train, evaluate, explain,
benchmark-maps, calibrate, fit-positions, card). The parsers are in
:mod:`sensitivity.cli.parsers`, the commands in :mod:`sensitivity.cli.commands`."""

from __future__ import annotations

import sys

from sensitivity.cli import commands, explain
from sensitivity.cli.parsers import build_parser
from sensitivity.metrics import maps_benchmark
from sensitivity.model import position_head
from sensitivity.trust import confidence


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        args.streamlit_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from sensitivity.imaging.images import ImageError
    from sensitivity.model.data import DataError
    from sensitivity.model.io import ModelError

    runners = {
        "serve": commands.serve,
        "train": commands.train,
        "evaluate": commands.evaluate,
        "explain": explain.run,
        "benchmark-maps": maps_benchmark.run,
        "calibrate": confidence.run,
        "fit-positions": position_head.run,
        "card": commands.card,
    }
    try:
        return runners[args.command](args)
    except (DataError, ModelError, ImageError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
