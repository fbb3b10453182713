"""The one module that knows Metaflow's insides: what it checks for the fork
engine, and what happens when the installed Metaflow lacks one of those names."""

from __future__ import annotations

import subprocess
import threading
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


def _git_repository(directory: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=directory,
            capture_output=True,
            check=True,
        )

    git("init", "-q", "-b", "trunk")
    git("remote", "add", "origin", "git@example.com:team/flows.git")
    (directory / "flow.py").write_text("# a flow\n")
    git("add", "flow.py")
    git("commit", "-q", "-m", "flow")
    (directory / "flow.py").write_text("# a changed flow\n")


@pytest.mark.parametrize("repository", [True, False], ids=["repository", "no repository"])
def test_gits_questions_asked_at_once_get_metaflows_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repository: bool
) -> None:
    from metaflow import metaflow_git

    if repository:
        _git_repository(tmp_path)
    asked = metaflow_git._call_git
    # Every question waits until all of them are being asked: one at a time,
    # the first would wait in vain.
    together = threading.Barrier(len(metaflow_seam.GIT_QUESTIONS), timeout=120)

    def call_git(args: list[str], path: object) -> object:
        together.wait()
        return asked(args, path)

    monkeypatch.setattr(metaflow_git, "_call_git", call_git)
    monkeypatch.setattr(metaflow_git, "_git_info_cache", None)
    at_once = metaflow_seam.repository_info_at_once(str(tmp_path))
    assert metaflow_git._call_git is call_git
    monkeypatch.setattr(metaflow_git, "_call_git", asked)
    monkeypatch.setattr(metaflow_git, "_git_info_cache", None)
    assert at_once == metaflow_git.get_repository_info(str(tmp_path))
    if repository:
        assert at_once["branch_name"] == "trunk"
        assert at_once["has_uncommitted_changes"] is True


def test_a_question_git_was_not_asked_at_once_is_asked_when_metaflow_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metaflow import metaflow_git

    _git_repository(tmp_path)
    monkeypatch.setattr(metaflow_seam, "GIT_QUESTIONS", metaflow_seam.GIT_QUESTIONS[:2])
    monkeypatch.setattr(metaflow_git, "_git_info_cache", None)
    at_once = metaflow_seam.repository_info_at_once(str(tmp_path))
    monkeypatch.setattr(metaflow_git, "_git_info_cache", None)
    assert at_once == metaflow_git.get_repository_info(str(tmp_path))
    assert at_once["branch_name"] == "trunk"
