"""The layer rules of docs/architecture.md, checked on the real modules."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import arsl_tui.domain

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "obs", "huaweicloudsdkcore", "textual")


def loaded_top_level_modules(statement: str) -> set[str]:
    """Top-level module names present after running `statement` in a fresh interpreter."""
    script = f"import sys, json\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_domain_imports_only_the_standard_library() -> None:
    names = [f"arsl_tui.domain.{info.name}" for info in pkgutil.iter_modules(arsl_tui.domain.__path__)]
    assert "arsl_tui.domain.manifest" in names
    loaded = loaded_top_level_modules("\n".join(f"import {name}" for name in names))
    third_party = {
        name
        for name in loaded - set(sys.stdlib_module_names) - {"arsl_tui", "__main__"}
        if not name.startswith(("_distutils_hack", "__editable__"))
    }
    assert third_party == set()


def test_cli_start_up_loads_no_sdk_torch_or_textual() -> None:
    loaded = loaded_top_level_modules("import arsl_tui.cli; arsl_tui.cli.build_parser()")
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_trainer_never_imports_arsl_tui() -> None:
    offenders = []
    for source in (ROOT / "trainer").rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{source.relative_to(ROOT)}: {m}" for m in modules if m.split(".")[0] == "arsl_tui"]
    assert offenders == []


def test_only_the_huawei_providers_import_huawei_sdks() -> None:
    offenders = []
    for source in (ROOT / "arsl_tui").rglob("*.py"):
        if "providers/huawei" in source.as_posix():
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{source.relative_to(ROOT)}: {m}"
                for m in modules
                if m.split(".")[0] == "obs" or m.startswith("huaweicloudsdk")
            ]
    assert offenders == []
