"""The hook implementations the documentation shows are safe to copy as written.

pytest refuses a conftest.py that implements a hook it has no spec for, and the
specs of pytest-artflow exist only while the plugin is loaded: an example that
breaks ``pytest -p no:artflow`` would break a user's whole test suite.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks(markdown: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", markdown, re.S)]


def documented_sources() -> dict[str, str]:
    """Every piece of documentation code that may implement a hook, by where it is."""
    sources = {f"README.md block {n}": b for n, b in enumerate(python_blocks(README), 1)}
    for path in sorted((ROOT / "examples").rglob("*.py")):
        sources[str(path.relative_to(ROOT))] = path.read_text()
    return sources


def _is_optional_hookimpl(decorator: ast.expr) -> bool:
    return (
        isinstance(decorator, ast.Call)
        and ast.unparse(decorator.func) == "pytest.hookimpl"
        and any(
            k.arg == "optionalhook" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in decorator.keywords
        )
    )


def artflow_hook_implementations(source: str) -> list[ast.FunctionDef]:
    if "def pytest_artflow_" not in source:
        return []  # signatures in prose blocks need not parse
    return [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("pytest_artflow_")
    ]


def readme_conftest() -> str:
    blocks = [b for b in python_blocks(README) if b.startswith("# conftest.py")]
    assert len(blocks) == 1, "README.md has one conftest.py example of the hooks"
    return blocks[0]


def test_every_documented_hook_implementation_is_optional() -> None:
    found = {
        f"{where}: {impl.name}": any(map(_is_optional_hookimpl, impl.decorator_list))
        for where, source in documented_sources().items()
        for impl in artflow_hook_implementations(source)
    }
    assert found, "the README shows hook implementations"
    assert [where for where, optional in found.items() if not optional] == []


# The README's conftest.py names an engine class it does not define; this one
# records the jobs it runs, so the session below can tell it was used.
ENGINE = """
from pytest_artflow.engines.subprocess import SubprocessEngine


class RecordingEngine(SubprocessEngine):
    jobs = []

    def run(self, job):
        RecordingEngine.jobs.append(job.args)
        return super().run(job)
"""

ENV_FLOW = """
import os
from metaflow import FlowSpec, step

class EnvFlow(FlowSpec):
    @step
    def start(self):
        self.url = os.environ.get("MY_SERVICE_URL")
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.fixture
def readme_hooks(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(readme_conftest() + ENGINE)
    pytester.makepyfile(env_flow=ENV_FLOW)
    return pytester


def test_readme_conftest_is_harmless_without_the_plugin(readme_hooks: pytest.Pytester) -> None:
    readme_hooks.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = readme_hooks.runpytest_subprocess("-p", "no:artflow")
    assert "unknown hook" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_readme_conftest_takes_effect_with_the_plugin(readme_hooks: pytest.Pytester) -> None:
    readme_hooks.makepyfile(
        test_it="""
        import conftest

        def test_it(artflow_run):
            run = artflow_run("env_flow.py", engine="recording")
            assert run["start"].data.url == "http://127.0.0.1:9"
            assert "ci" in run.client.user_tags
            assert len(conftest.RecordingEngine.jobs) == 1
        """
    )
    readme_hooks.runpytest_subprocess().assert_outcomes(passed=1)
