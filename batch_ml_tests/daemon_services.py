"""A real `dagster-daemon run` and a real `dagster-webserver` for integration tests.

Unlike `services.make_ui` (`dagster dev`, one parent for everything), the daemon and the
webserver run here as two separate processes, as in a deployment: each in its own session,
both on the instance in `DAGSTER_HOME`, both loading `workspace.yaml` from the repository root.
They are stopped with SIGINT (how both shut down their code servers); whatever is left of a
process group after a grace period is killed, and how each one ended is recorded so a test can
assert a clean shutdown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .services import REPO, Webserver, _wait_until_serving, free_port

VENV_BIN = REPO / ".venv" / "bin"
# The daemons a backfill needs: the backfill loop and the run queue (dagster.yaml queues runs).
REQUIRED_DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")

DAEMON_HEALTH = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""


def dagster_home(folder: Path) -> Path:
    """A fresh DAGSTER_HOME holding a copy of the repository's dagster.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", folder / "dagster.yaml")
    return folder


@dataclass
class Service:
    """One process started in its own session (its pid is its process group id)."""

    name: str
    process: subprocess.Popen
    log: Path
    # Filled in by stop(): True when the process and every process of its group had ended
    # within the grace period after SIGINT (nothing had to be killed).
    clean_exit: bool | None = None
    returncode: int | None = None
    stop_seconds: float | None = None

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a process we may not signal is still alive
            return True
        return True

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)

    def wait_stopped(self, started: float, deadline: float) -> None:
        """Wait until `deadline` for the leader and its group, then kill what is left."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.clean_exit = self.process.poll() is not None and not self.group_alive()
        self.stop_seconds = time.monotonic() - started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.returncode = self.process.wait(timeout=10)


def _start(name: str, args: list[str], env: dict[str, str], log: Path) -> Service:
    out = log.open("w")
    try:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()  # the child holds its own copy of the file descriptor
    return Service(name=name, process=process, log=log)


@dataclass
class DagsterServices:
    webserver: Webserver
    daemon: Service
    webserver_process: Service
    # Seconds from start to: webserver answering /server_info; required daemons healthy.
    startup: dict[str, float] = field(default_factory=dict)

    @property
    def services(self) -> tuple[Service, Service]:
        return (self.daemon, self.webserver_process)

    def daemon_statuses(self) -> dict[str, bool]:
        data = self.webserver.graphql(DAEMON_HEALTH)
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}

    def wait_for_daemons(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        statuses: dict[str, bool] = {}
        while time.monotonic() < deadline:
            if self.daemon.process.poll() is not None:
                raise RuntimeError(
                    f"dagster-daemon exited with {self.daemon.process.returncode}:\n"
                    f"{self.daemon.log.read_text()[-3000:]}"
                )
            statuses = self.daemon_statuses()
            if all(statuses.get(d) for d in REQUIRED_DAEMONS):
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"daemons not healthy within {timeout} s: {statuses}\n"
            f"{self.daemon.log.read_text()[-3000:]}"
        )


def service_env(home: Path, config: Path) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "BATCH_ML_CONFIG": str(config)}
    env.pop("BATCH_ML_DATA_ROOT", None)  # the config's data.root must win
    return env


@contextlib.contextmanager
def daemon_and_webserver(
    home: Path,
    config: Path,
    log_dir: Path,
    before_daemon: Callable[[Webserver], None] | None = None,
    timeout: float = 120,
    grace: float = 30,
) -> Iterator[DagsterServices]:
    """Run `dagster-webserver` (on 127.0.0.1, a free port) and `dagster-daemon run` on the
    instance in `home` with the project configuration `config`.

    The webserver starts first; `before_daemon(webserver)` runs once it serves and before the
    daemon starts, e.g. to stop a sensor that is running by default before its first tick."""
    env = service_env(home, config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    running: list[Service] = []
    try:
        web = _start(
            "dagster-webserver",
            [
                str(VENV_BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "workspace.yaml",
            ],
            env,
            log_dir / "webserver.log",
        )
        running.append(web)
        _wait_until_serving(url, web.process, web.log, timeout)
        webserver = Webserver(url=url, log=web.log)
        serving = time.monotonic() - started
        if before_daemon is not None:
            before_daemon(webserver)
        daemon = _start(
            "dagster-daemon",
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            env,
            log_dir / "daemon.log",
        )
        running.append(daemon)
        services = DagsterServices(webserver, daemon, web)
        services.startup["webserver_serving"] = serving
        services.wait_for_daemons(max(1.0, timeout - (time.monotonic() - started)))
        services.startup["daemons_healthy"] = time.monotonic() - started
        yield services
    finally:
        stopping = time.monotonic()
        for service in running:
            service.interrupt()
        for service in running:
            service.wait_stopped(stopping, stopping + grace)
