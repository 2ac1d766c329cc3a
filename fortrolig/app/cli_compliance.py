"""`fortrolig processing-record`: the record of processing activities (GDPR art. 30)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from fortrolig.core.clock import SystemClock
from fortrolig.core.config import load_config
from fortrolig.core.outfile import check_format, check_new_file, write_new_file
from fortrolig.journal.model import iso_from_micros, to_micros

from . import processing_record


def cmd_processing_record(args: argparse.Namespace) -> int:
    """Print or write the record of processing activities generated from the configuration."""
    check_format(args.format, processing_record.FORMATS)
    if args.out is not None:
        check_new_file(args.out)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["server.data_dir"] = args.data_dir
    config = load_config(args.config, os.environ, overrides)
    generated = iso_from_micros(to_micros(SystemClock().now()))
    doc = processing_record.build_record(config, generated)
    if args.format == "md":
        text = processing_record.render_markdown(doc)
    else:
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if args.out is None:
        print(text, end="")
    else:
        write_new_file(args.out, text.encode("utf-8"))
        print(f"processing record written to {args.out} ({args.format})")
    return 0


def add_parsers(sub: Any) -> None:
    """Add `processing-record` to the top-level subparsers."""
    command: argparse.ArgumentParser = sub.add_parser(
        "processing-record",
        help="the record of processing activities (GDPR art. 30) from this node's configuration",
    )
    command.add_argument("--data-dir", type=Path)
    command.add_argument("--config", type=Path)
    command.add_argument("--format", default="json", help="json (default) or md")
    command.add_argument("--out", type=Path, help="new file for the record (default: stdout)")
    command.set_defaults(func=cmd_processing_record)
