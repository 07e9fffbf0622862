"""Command line: python -m chitalab.report FOLDER [--out DIR]."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..cli import fail
from ..errors import UserError, require_extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="chitalab-report",
        description="Read every results.json under FOLDER and write tables (markdown, CSV), PNG figures and a "
        "summary in the paper's layout.",
    )
    parser.add_argument("folder", type=Path, help="a run or sweep folder, e.g. outputs/multirun/paper_oneshot_mlpnet")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: FOLDER/report)")
    parser.add_argument(
        "--update",
        type=Path,
        default=None,
        metavar="MARKDOWN",
        help="also copy each section into the file's <!-- report:NAME --> ... <!-- /report:NAME --> block "
        "(NAME: the experiment preset), e.g. docs/reproducing.md",
    )
    parser.add_argument(
        "--link-base",
        default=None,
        metavar="URL",
        help="with --update: link figures absolutely under URL (the repository's raw files); without it the "
        "copied sections name each figure's path as text",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        require_extra("matplotlib", "report", "chitalab-report")
        from .build import build_report  # after the check: it imports matplotlib
        from .readme import update_markdown

        report = build_report(args.folder, args.out)
        replaced = update_markdown(args.update, report, args.link_base) if args.update else []
    except UserError as err:
        fail(str(err))
    print(report.read_text().split("\n## ")[0].strip())  # the summary
    print(f"\nreport written to {report}")
    if replaced:
        print(f"updated {args.update}: {', '.join(replaced)}")


if __name__ == "__main__":
    main()
