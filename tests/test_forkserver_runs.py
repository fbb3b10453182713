"""What a fork run costs before and after its flow, kept faithful: each run
starts in a spare zygote the server forked ahead of it (one spare per run,
none left behind), and the run's exit status comes from its zygote, or from
the server when the zygote dies without saying."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import alive, children, wait_for

from pytest_artflow.engines.base import EngineResult
from pytest_artflow.engines.fork import ForkEngine
from pytest_artflow.inflow import lifetime

pytestmark = pytest.mark.skipif(not lifetime.owns_descendants(), reason="needs Linux (/proc)")

FLOWS = Path(__file__).resolve().parent / "flows"

#: Seconds an awaited event may take on a loaded machine (a safety net only).
LIMIT = 300.0

EXIT_FLOW = """
    import os
    import signal

    from metaflow import FlowSpec, Parameter, step


    def parent(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])


    class ExitFlow(FlowSpec):
        how = Parameter("how", default="ok")

        @step
        def start(self):
            zygote = os.getppid()  # tasks are forked from the run's zygote
            if self.how == "fail":
                raise RuntimeError("failing on purpose")
            if self.how == "kill-zygote":
                os.kill(zygote, signal.SIGKILL)
            if self.how == "stop-server":
                server = parent(zygote)
                assert server == int(os.environ["EXIT_FLOW_SERVER"]), server
                os.kill(server, signal.SIGSTOP)
            self.next(self.end)

        @step
        def end(self):
            pass
"""


@pytest.fixture
def engine() -> Iterator[ForkEngine]:
    made = ForkEngine()
    try:
        yield made
    finally:
        made.close()


def _run(
    artflow_run: Any,
    engine: ForkEngine,
    flow: Path,
    *args: str,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> EngineResult:
    config = artflow_run.configure(flow, timeout=timeout, env=env)
    result = engine.run(artflow_run.job(config, ["run", "--max-workers", "1", *args]))
    assert result.extra["engine"] == "fork", result.extra
    return result


def _the_spare(server: int, but: int) -> int:
    """The server's one child once the zygote ``but`` is gone: its spare."""

    def spare() -> int | None:
        alive = children(server)
        return alive.pop() if len(alive) == 1 and but not in alive else None

    found: int = wait_for(spare, "the server's spare zygote")
    return found


def test_each_run_starts_in_a_spare_zygote_forked_before_it(artflow_run, engine):
    first = _run(artflow_run, engine, FLOWS / "linear_flow.py")
    assert first.returncode == 0, first.output
    server = first.extra["server"]
    spare = _the_spare(server, but=first.extra["zygote"])
    # A spare waits in a session of its own (a run is killed by its group).
    assert os.getsid(spare) == spare
    second = _run(artflow_run, engine, FLOWS / "linear_flow.py")
    assert second.returncode == 0, second.output
    assert second.extra["server"] == server
    assert second.extra["zygote"] == spare
    # Each spare serves one run: the next run gets a new one.
    assert _the_spare(server, but=spare) != spare


def test_no_spare_zygote_outlives_its_server(artflow_run, engine):
    first = _run(artflow_run, engine, FLOWS / "linear_flow.py")
    spare = _the_spare(first.extra["server"], but=first.extra["zygote"])
    engine.close()
    assert not alive(spare)


def test_a_spare_zygote_ends_when_its_server_is_killed(artflow_run, engine):
    first = _run(artflow_run, engine, FLOWS / "linear_flow.py")
    server = first.extra["server"]
    spare = _the_spare(server, but=first.extra["zygote"])
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(spare), "the spare zygote to end")


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("ok", 0),
        ("fail", 1),
        # The zygote cannot say: the server does.
        ("kill-zygote", -signal.SIGKILL),
    ],
)
def test_the_runs_exit_status_reaches_pytest(artflow_run, engine, flow_file, how, code):
    result = _run(artflow_run, engine, flow_file(EXIT_FLOW), "--how", how)
    assert (result.returncode, result.timed_out) == (code, False), result.output
    if how == "fail":
        assert "failing on purpose" in result.output


def test_the_exit_status_comes_from_the_zygote_not_the_server(artflow_run, engine, flow_file):
    """The server is stopped while the run goes on: only the zygote can tell
    pytest that the run ended, and how."""
    flow = flow_file(EXIT_FLOW)
    server = _run(artflow_run, engine, flow).extra["server"]
    try:
        result = _run(
            artflow_run,
            engine,
            flow,
            "--how",
            "stop-server",
            # Only so that a failure ends: the run takes a second or two.
            timeout=LIMIT,
            env={"EXIT_FLOW_SERVER": str(server)},
        )
    finally:
        # (Gone if the engine gave up on it.)
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGCONT)
    assert (result.returncode, result.timed_out) == (0, False), result.output
    # The server, going on, serves the next run.
    assert _run(artflow_run, engine, flow).returncode == 0


def test_a_timed_out_runs_exit_status_is_the_servers_word(artflow_run, engine, tmp_path):
    result = _run(
        artflow_run, engine, FLOWS / "hanging_flow.py", "--pid_dir", str(tmp_path), timeout=5
    )
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
