"""The fork engine's run process builds Metaflow's code package on demand.

The class itself is checked in fresh interpreters, in a sandbox's environment
(creating a ``MetaflowPackage`` registers it in Metaflow's process-wide system
context); then which class a run's own process uses, under each engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _python(sandbox, script: str, **extra_env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=sandbox.environ(extra_env),
        cwd=sandbox.root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_package_is_built_when_first_read_and_is_metaflows_own(artflow_sandbox):
    script = """
        import io, os, sys, tarfile, tempfile
        sys.argv = [EXAMPLES + "/art_flow.py"]
        sys.path.insert(0, EXAMPLES)
        # Modules that ask to be packaged: one loaded before the packages are
        # made, one after (Metaflow notes the loaded modules as it makes one).
        modules = tempfile.mkdtemp()
        for name in ("included_before", "included_after"):
            with open(os.path.join(modules, name + ".py"), "w") as f:
                f.write("METAFLOW_PACKAGE_POLICY = 'include'\\n")
        sys.path.insert(0, modules)
        import included_before
        from metaflow.metaflow_environment import MetaflowEnvironment
        from metaflow.package import MetaflowPackage
        from pytest_artflow.inflow.codepackage import PackageOnDemand
        import art_flow

        built = []
        make = MetaflowPackage._make
        def counted(self):
            built.append(type(self).__name__)
            return make(self)
        MetaflowPackage._make = counted

        flow = art_flow.ArtFlow(use_cli=False)
        environment = MetaflowEnvironment(flow)
        # Fill Metaflow's git cache first, as the fork engine does: two
        # packages packing at once would race to fill it.
        environment.get_environment_info()
        lazy = PackageOnDemand(flow, environment, lambda *a, **k: None)
        # Metaflow's own class starts packing at once; this one waits.
        assert built == [] and lazy._create_thread.ident is None, built

        eager = MetaflowPackage(flow, environment, lambda *a, **k: None)
        # Nor has it looked for what goes in (Metaflow's own class has).
        assert "_deferred" in vars(lazy._mfcontent)
        assert "_deferred" not in vars(eager._mfcontent)
        import included_after

        assert sorted(lazy.path_tuples()) == sorted(eager.path_tuples())
        names = [name for _, name in lazy.path_tuples()]
        assert any("included_before" in name for name in names), names
        assert not any("included_after" in name for name in names), names
        assert sorted(built) == ["MetaflowPackage", "PackageOnDemand"], built

        def content(package):
            with tarfile.open(fileobj=io.BytesIO(package.blob)) as tar:
                return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}

        assert content(lazy) == content(eager)
        print(len(content(lazy)))
    """
    script = f"EXAMPLES = {str(EXAMPLES)!r}\n" + textwrap.dedent(script)
    assert int(_python(artflow_sandbox, script)) > 0


@pytest.mark.parametrize(
    ("always_upload", "used"), [("", "PackageOnDemand"), ("1", "MetaflowPackage")]
)
def test_on_demand_unless_metaflow_always_uploads_the_package(artflow_sandbox, always_upload, used):
    script = """
        from pytest_artflow.inflow import codepackage
        codepackage.install()
        from metaflow.cli_components import run_cmds
        print(run_cmds.MetaflowPackage.__name__)
    """
    extra = {"METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE": always_upload} if always_upload else {}
    assert _python(artflow_sandbox, script, **extra).strip() == used


PACKAGE_CLASS_FLOW = """
    import metaflow.package
    from metaflow import FlowSpec, step

    # Module level runs in the run's own process too (the runtime), where
    # Metaflow's CLI makes the package.
    print("package class:", metaflow.package.MetaflowPackage.__name__)

    class PackageClassFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass
"""


@pytest.mark.parametrize(
    ("engine", "used"), [("fork", "PackageOnDemand"), ("subprocess", "MetaflowPackage")]
)
def test_the_fork_engines_run_process_packs_on_demand(artflow_run, flow_file, engine, used):
    run = artflow_run(flow_file(PACKAGE_CLASS_FLOW), engine=engine)
    assert f"package class: {used}" in run.output
