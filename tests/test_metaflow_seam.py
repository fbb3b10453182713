"""The one module that knows Metaflow's insides: what it checks for the fork
engine, and what happens when the installed Metaflow lacks one of those names."""

from __future__ import annotations

from pathlib import Path

import metaflow.runtime
import pytest
from metaflow.plugins.cards.card_creator import CardCreator
from packaging.version import Version

from pytest_artflow import metaflow_seam

FLOWS = Path(__file__).parent / "flows"


def test_installed_metaflow_is_supported_and_has_what_the_fork_engine_needs() -> None:
    assert metaflow_seam.installed_version() >= Version(metaflow_seam.OLDEST_SUPPORTED)
    assert metaflow_seam.fork_engine_problems() == []


def test_a_missing_name_and_a_changed_signature_are_named(monkeypatch) -> None:
    monkeypatch.delattr(metaflow.runtime, "subprocess")
    monkeypatch.setattr(CardCreator, "_run_command", lambda self, argv: None)
    assert metaflow_seam.fork_engine_problems() == [
        "metaflow.runtime.subprocess is missing",
        "metaflow.plugins.cards.card_creator.CardCreator._run_command no longer takes cmd",
    ]


def test_seam_imports_no_metaflow() -> None:
    """Every task process imports the seam before Metaflow's CLI, which must
    be imported inside the flow's context."""
    import subprocess
    import sys

    code = (
        "import sys, pytest_artflow.metaflow_seam\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'metaflow'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_changed_metaflow_sends_fork_runs_to_subprocess_with_one_warning(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    """The fork engine refuses to run on a Metaflow that lacks a name it
    patches: every run goes to the subprocess engine, and the session is told
    once which name it was."""
    pytester.makepyfile(
        f"""
        import warnings

        import pytest

        from pytest_artflow.errors import MetaflowChangedWarning
        from pytest_artflow.settings import engines_key

        FLOW = {str(FLOWS / "linear_flow.py")!r}


        @pytest.fixture
        def fork_results(request, monkeypatch):
            engine = request.config.stash[engines_key].get("fork")
            results = []
            original = engine.run

            def recording(job):
                results.append(original(job))
                return results[-1]

            monkeypatch.setattr(engine, "run", recording)
            return results


        def test_first_run_warns(artflow_run, fork_results):
            with pytest.warns(MetaflowChangedWarning) as seen:
                run = artflow_run(FLOW, engine="fork")
            assert run.successful
            assert len(seen) == 1
            message = str(seen[0].message)
            assert "metaflow.runtime.subprocess is missing" in message
            assert "runs use the subprocess engine instead" in message
            assert [r.extra["engine"] for r in fork_results] == ["subprocess"]
            assert fork_results[0].extra["refused"] == (
                "Metaflow changed: metaflow.runtime.subprocess is missing"
            )


        def test_later_runs_do_not_warn_again(artflow_run, fork_results):
            with warnings.catch_warnings():
                warnings.simplefilter("error", MetaflowChangedWarning)
                run = artflow_run(FLOW, engine="fork")
            assert run.successful
            assert [r.extra["engine"] for r in fork_results] == ["subprocess"]
        """
    )
    monkeypatch.delattr(metaflow.runtime, "subprocess")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
