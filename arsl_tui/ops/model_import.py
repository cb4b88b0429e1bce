"""Import a registered version into the serving platform (`arsl models import VERSION`, and before a deploy).

On Huawei a real-time service serves *AI applications*, not packages: the version's package is copied into
the platform's layout next to it in the registry (`packages/<package_id>/<platform>/`), the platform is
asked to import that folder, and its model is waited for until it can be deployed (or has failed, with the
reason). The platform's model id is then recorded in the registry (`imports/<platform>/v<N>.json`).

Importing is idempotent: the platform is asked first whether it holds the version already (by name and
version), in whatever state, so a second call, or a call after a crash, creates nothing new. Layout files are
written only when the store does not hold the same bytes. A model found *failed* is the exception: a name and
version name one model, so it is deleted and the version imported again (the progress says so); otherwise a
failed import would fail every re-run.

The local backend has no importer: its gateway loads registered packages as they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.ports import ImportedModel, ModelImporter, ModelImportError
from arsl_tui.domain.registry import ALIASES, ImportRecord, format_version, parse_version

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.ops.registry import ModelRegistry

WAIT_S = 1800.0
"""How long an import may take before the wait gives up (the platform carries on regardless)."""
POLL_S = 10.0
NOTHING_TO_IMPORT = "the local gateway serves registered packages as they are: there is nothing to import"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImportOutcome:
    version: str
    model: ImportedModel
    created: bool
    """True when this call asked the platform to import; False when it held the version already."""
    record: ImportRecord

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "created": self.created, **self.model.to_json()}


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def resolve(registry: ModelRegistry, name: str) -> str:
    """`v3`, `champion` or `challenger` as a registered version name."""
    if name in ALIASES:
        found = registry.state().aliases.get(name)
        if found is None:
            raise ModelImportError(f"no version is {name} yet (`arsl models list` shows the versions)")
        name = found
    version = format_version(parse_version(name))
    registry.get(version)
    return version


def upload_layout(registry: ModelRegistry, importer: ModelImporter, version: str) -> str:
    """Write the platform's layout of `version` beside its package; the folder's key."""
    record = registry.get(version)
    folder = registry.import_folder(record.lineage.package_id, importer.platform)
    for item in record.package:
        registry.copy_package_file(item, folder + importer.package_path(item.path))
    for path, data in importer.layout(version, record.lineage.package_id, record.config).items():
        registry.put_import_file(folder + path, data)
    return folder


def import_version(
    registry: ModelRegistry,
    importer: ModelImporter,
    version: str,
    *,
    wait_s: float = WAIT_S,
    poll_s: float = POLL_S,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> ImportOutcome:
    """Make `version` a deployable model of the importer's platform and record its id; `ModelImportError`
    when the platform refuses or fails it (the message says why), or it is still not ready after `wait_s`."""
    say = progress or (lambda _text: None)
    version = resolve(registry, version)
    model = importer.find(version)
    if model is not None and model.failed:
        say(
            f"{version}: {importer.platform} model {model.model_id} ({model.name} {model.platform_version}) failed "
            f"earlier ({model.detail or model.status}); deleting it and importing {version} again"
        )
        importer.delete(version, model.model_id)
        model = None
    created = model is None
    if model is None:
        say(f"copying {version} into the {importer.platform} layout")
        folder = upload_layout(registry, importer, version)
        model = importer.create(version, folder)
        say(f"{importer.platform} is importing {version} as {model.name} {model.platform_version} ({model.model_id})")
    deadline = clock() + wait_s
    while not model.ready:
        if model.failed:
            raise ModelImportError(
                f"{importer.platform} could not import {version} ({model.name} {model.platform_version}, "
                f"model {model.model_id}): {model.detail or model.status}"
            )
        if clock() >= deadline:
            raise ModelImportError(
                f"{importer.platform} is still {model.status or 'working'} on {version} (model {model.model_id}) "
                f"after {wait_s:g} s; run the import again later to go on waiting",
                transient=True,
            )
        say(f"{version}: {model.status or 'waiting'}")
        sleep(poll_s)
        try:
            model = importer.show(version, model.model_id)
        except ModelImportError as error:
            if not error.transient:
                raise
            # A read that may pass (throttling, 5xx, a dropped answer): the import goes on regardless; the
            # deadline still bounds the wait.
            say(f"{version}: {error} (asking again)")
    record = registry.imported(version, importer.platform)
    if record is None or record.model_id != model.model_id:
        record = registry.record_import(
            ImportRecord(
                version=version,
                platform=importer.platform,
                model_id=model.model_id,
                name=model.name,
                platform_version=model.platform_version,
                location=model.location,
                imported_at=_utc(wall_clock()),
            )
        )
    return ImportOutcome(version=version, model=model, created=created, record=record)


def import_for_settings(settings: Settings, version: str, *, progress: Progress | None = None) -> ImportOutcome | None:
    """`import_version` on the configured backend; None where its serving platform needs no import."""
    from arsl_tui.backends import backend_for
    from arsl_tui.ops.registry import ModelRegistry

    importer = backend_for(settings).model_importer()
    if importer is None:
        return None
    return import_version(ModelRegistry.from_settings(settings), importer, version, progress=progress)


def model_id_function(
    registry: Callable[[], ModelRegistry],
    importer: Callable[[], ModelImporter],
    *,
    progress: Progress | None = None,
    **wait: Any,
) -> Callable[[str], str]:
    """version → the platform's model id, importing the version first when needed: what a serving platform
    that deploys imported models calls for each version it is asked to serve. Registry and importer are made
    on the first call; ids found in this process are remembered (a version's model never changes)."""
    lock = threading.Lock()
    made: dict[str, Any] = {}
    known: dict[str, str] = {}

    def model_id(version: str) -> str:
        # One import at a time: the versions of one deploy are imported one after the other.
        with lock:
            if version in known:
                return known[version]
            if not made:
                made["registry"], made["importer"] = registry(), importer()
            outcome = import_version(made["registry"], made["importer"], version, progress=progress, **wait)
            known[outcome.version] = outcome.model.model_id  # by version, never by alias: aliases move
            return outcome.model.model_id

    return model_id


__all__ = [
    "NOTHING_TO_IMPORT",
    "ImportOutcome",
    "import_for_settings",
    "import_version",
    "model_id_function",
    "resolve",
    "upload_layout",
]
