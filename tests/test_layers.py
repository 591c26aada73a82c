"""The arrows point one way: what each layer loads when imported alone.

Each check imports one module in a fresh interpreter and lists what came
with it, so an import added in the wrong direction fails here, not in a
profile months later.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

PROBE = """
import json, sys
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names: list[str] = json.loads(out)
    return names


def ours(names: list[str]) -> set[str]:
    return {n for n in names if n == "mockai_tw" or n.startswith("mockai_tw.")}


HEAVY = ("twisted", "yaml", "jsonschema", "treq", "referencing")


class LayerTests(TestCase):
    def heavy(self, names: list[str]) -> list[str]:
        return [n for n in names if n.split(".")[0] in HEAVY]

    def test_wire_imports_only_the_plan_types(self) -> None:
        allowed = {
            "mockai_tw",
            "mockai_tw.engine",
            "mockai_tw.engine.plan",
            "mockai_tw.errors",
            "mockai_tw.fault_kinds",
            "mockai_tw.tables",
        }
        for name in (
            "chat",
            "completions",
            "responses",
            "embeddings",
            "moderations",
            "models",
            "azure",
            "anthropic",
            "gemini",
            "errors",
        ):
            names = loaded(f"mockai_tw.wire.{name}")
            extra = {
                n for n in ours(names) - allowed if not n.startswith("mockai_tw.wire")
            }
            self.assertEqual(extra, set(), name)
            self.assertEqual(self.heavy(names), [], name)

    def test_leaves_import_nothing_of_ours(self) -> None:
        for leaf in (
            "mockai_tw.fault_kinds",
            "mockai_tw.hooks",
            "mockai_tw.globs",
            "mockai_tw.errors",
            "mockai_tw.tables",
            "mockai_tw.state.url",
            "mockai_tw.state.types",
        ):
            # Its own packages load with it (mockai_tw.state: a docstring).
            parts = leaf.split(".")
            packages = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            self.assertEqual(ours(loaded(leaf)) - packages, set(), leaf)

    def test_config_schema_is_a_leaf(self) -> None:
        names = ours(loaded("mockai_tw.config"))
        self.assertEqual(
            {n for n in names if n.startswith("mockai_tw.engine")}, set(), names
        )

    def test_the_memory_backend_loads_no_redis_client(self) -> None:
        # state.backend: memory (the default) is today's server: no client.
        for module in ("mockai_tw.tap", "mockai_tw.server", "mockai_tw.web.control"):
            names = loaded(module)
            self.assertEqual(
                [n for n in names if n.split(".")[0] in ("txredisapi", "hiredis")],
                [],
                module,
            )

    def test_engine_knows_no_twisted(self) -> None:
        for module in (
            "mockai_tw.engine.chat",
            "mockai_tw.engine.completions",
            "mockai_tw.engine.responses",
            "mockai_tw.engine.faults",
            "mockai_tw.engine.ratelimit",
            "mockai_tw.engine.capacity",
            "mockai_tw.engine.rules",
            "mockai_tw.engine.schema_gen",
            "mockai_tw.engine.codec",
        ):
            names = loaded(module)
            self.assertEqual(
                [n for n in names if n.split(".")[0] == "twisted"], [], module
            )


ROOT = Path(__file__).resolve().parent.parent


class PackagingTests(TestCase):
    def test_setup_cfg_lists_every_package(self) -> None:
        # A package missing here installs fine in editable mode and is
        # missing from a wheel, a container, a `pip install .`.
        parser = configparser.ConfigParser()
        parser.read(ROOT / "setup.cfg")
        listed = set(parser["options"]["packages"].split())
        found = {
            ".".join(init.parent.relative_to(ROOT).parts)
            for init in (ROOT / "mockai_tw").rglob("__init__.py")
            if "__pycache__" not in init.parts
        }
        self.assertEqual(found - listed, set())
        self.assertEqual(listed - found - {"twisted.plugins"}, set())

    def test_ci_runs_the_readme_test_command_verbatim(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
        command = next(
            line
            for block in blocks
            for line in block.splitlines()
            if "twisted.trial tests" in line and "pip install" in line
        )
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        self.assertIn(command.strip() + " || exit 1", ci)
