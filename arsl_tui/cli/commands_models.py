"""`arsl models import VERSION`: make a registered version a model the serving platform deploys.

On Huawei the version becomes a ModelArts AI application (`ops.model_import`): the package is copied into
ModelArts' layout next to it on OBS, imported, and waited for until it is published; its model id is recorded
in the registry. Running it again finds the same AI application instead of importing twice. On the local
backend the gateway serves registered packages directly: the command says so and exits 0.

`--json`: `{"version", "imported", "created", "model_id", "name", "platform_version", "status", "location",
…}` (`imported` false and a `reason` on the local backend). Exit codes: 0 imported (or nothing to import),
2 usage (unknown version, read-only mode), 3 the platform refused or failed the model, or did not finish in
time (the message says which and why).
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from arsl_tui.cli.common import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, CommandContext, CommandFailed, Handler


def _models_actions(subcommands: Any, common: argparse.ArgumentParser) -> Any:
    """The sub-commands of `arsl models`: the group the registry's commands made, or a new one."""
    models = subcommands.choices.get("models")
    if models is None:
        models = subcommands.add_parser("models", parents=[common], help="registered model versions")
        return models.add_subparsers(dest="models_command", metavar="ACTION")
    for action in models._actions:  # argparse keeps a group's sub-commands in this one action
        if isinstance(action, argparse._SubParsersAction):
            return action
    return models.add_subparsers(dest="models_command", metavar="ACTION")


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    actions = _models_actions(subcommands, common)
    importing = actions.add_parser(
        "import",
        parents=[common],
        help="make VERSION a model the serving platform deploys (ModelArts AI application)",
        description="Copy the version's package into ModelArts' model layout on OBS, import it as an AI "
        "application and wait until it is published; the model id is recorded in the registry. Idempotent. "
        "On the local backend there is nothing to import.",
    )
    importing.add_argument("version", metavar="VERSION", help="v1, v2, … or an alias (champion, challenger)")
    importing.set_defaults(handler=_errors(import_command))


def _errors(handler: Handler) -> Handler:
    """Registry and import errors → a one-line message and the contract's exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.ports import ModelImportError
        from arsl_tui.domain.registry import RegistryError, VersionFormatError
        from arsl_tui.ops.registry import VersionNotFound

        try:
            return handler(context, namespace)
        except (VersionNotFound, VersionFormatError) as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except (ModelImportError, RegistryError) as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def import_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.model_import import NOTHING_TO_IMPORT, import_for_settings

    context.require_writable("import a model")

    def say(text: str) -> None:
        context.console.print(text, markup=False, soft_wrap=True)

    outcome = import_for_settings(context.settings, namespace.version, progress=say)
    if outcome is None:
        if context.json_output:
            context.emit_json({"version": namespace.version, "imported": False, "reason": NOTHING_TO_IMPORT})
        else:
            context.console.print(NOTHING_TO_IMPORT)
        return EXIT_OK
    model = outcome.model
    if context.json_output:
        context.emit_json({"imported": True, **outcome.to_json()})
        return EXIT_OK
    how = "imported" if outcome.created else "already imported"
    context.console.print(
        f"{outcome.version} {how}: {model.name} {model.platform_version}, model {model.model_id} ({model.status})",
        markup=False,
        soft_wrap=True,  # ids are copied from here: never broken across lines
    )
    return EXIT_OK
