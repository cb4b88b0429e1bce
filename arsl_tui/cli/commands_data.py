"""`arsl data synth` and `arsl data validate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from arsl_tui.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandContext, CommandFailed, safe_text, whole_number

MAX_PER_CLASS = 100_000
"""ArSL2018 has about 1 700 images a class; far more is a typo that would fill the disk."""
MAX_SEED = 2**32 - 1


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    data = subcommands.add_parser("data", parents=[common], help="generate or validate a data set")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")

    synth = actions.add_parser("synth", parents=[common], help="generate a deterministic ArSL2018-shaped data set")
    synth.add_argument("out", type=Path, metavar="OUT", help="folder to create (must be empty or absent)")
    synth.add_argument(
        "--per-class",
        type=whole_number(1, MAX_PER_CLASS),
        default=300,
        metavar="N",
        help="images per class (default 300)",
    )
    synth.add_argument("--seed", type=whole_number(0, MAX_SEED), default=7, metavar="S", help="random seed (default 7)")
    synth.set_defaults(handler=synth_command)

    validate = actions.add_parser(
        "validate", parents=[common], help="decode every image, report problems, write manifest.json"
    )
    validate.add_argument("folder", type=Path, metavar="DIR")
    validate.add_argument(
        "--manifest", type=Path, metavar="PATH", help="where to write the manifest (default: DIR/manifest.json)"
    )
    validate.set_defaults(handler=validate_command)


def synth_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.synth import SynthError, synthesize

    if namespace.per_class < 1:
        raise CommandFailed(f"--per-class must be at least 1, got {namespace.per_class}", EXIT_USAGE)
    try:
        summary = synthesize(namespace.out, per_class=namespace.per_class, seed=namespace.seed)
    except SynthError as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    if context.json_output:
        context.emit_json(
            {
                "out": str(summary.out),
                "images": summary.images,
                "bytes": summary.bytes,
                "per_class": namespace.per_class,
                "seed": namespace.seed,
            }
        )
    else:
        context.console.print(
            f"wrote {summary.images} images ({summary.bytes / 1e6:.1f} MB) to {safe_text(str(summary.out))}",
            markup=False,
        )
    return EXIT_OK


def validate_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.manifest import SplitPolicy
    from arsl_tui.ops.dataset import DatasetError, validate_dataset, write_manifest

    dataset = context.settings.dataset
    split = SplitPolicy(seed=dataset.split_seed, val=dataset.val_fraction, test=dataset.test_fraction)
    try:
        report = validate_dataset(namespace.folder, split)
        manifest_path = write_manifest(report, namespace.manifest)
    except DatasetError as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise CommandFailed(f"cannot write the manifest: {error}", EXIT_USAGE) from None
    if context.json_output:
        context.emit_json({**report.to_json(), "manifest": str(manifest_path)})
    else:
        print_report(context, report)
        context.console.print(
            f"manifest {report.manifest.id[:12]} written to {safe_text(str(manifest_path))}", markup=False
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def print_report(context: CommandContext, report: Any) -> None:
    # File names come from the folder as they are: each is escaped (newlines, ANSI codes) before it is printed.
    table = Table(title=safe_text(str(report.root)), show_edge=False, pad_edge=False)
    table.add_column("class")
    for split_name in ("train", "val", "test"):
        table.add_column(split_name, justify="right")
    table.add_column("total", justify="right")
    for name, split_counts in report.manifest.counts().items():
        table.add_row(name, *(str(split_counts[s]) for s in ("train", "val", "test")), str(sum(split_counts.values())))
    context.console.print(table)
    context.console.print(
        f"{len(report.manifest.images)} images, {report.manifest.total_bytes / 1e6:.1f} MB, "
        f"{report.files_scanned} files decoded"
    )
    for finding in report.notes[:10]:
        context.console.print(f"  note     {safe_text(finding.path)}: {finding.detail}", markup=False)
    if len(report.notes) > 10:
        context.console.print(f"  note     … and {len(report.notes) - 10} more images normalised later")
    for finding in report.problems:
        context.console.print(
            f"  PROBLEM  {safe_text(finding.path)}: {finding.kind}: {safe_text(finding.detail)}", markup=False
        )
    context.console.print("OK: no problems" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
