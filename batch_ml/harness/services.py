"""Real Dagster services on 127.0.0.1 for tests and benchmarks: a fresh DAGSTER_HOME,
`make ui` (`dagster dev`, one parent for everything), and a `dagster-webserver` with a
separate `dagster-daemon run` as in a deployment.

Every process is started in its own session (its pid is its process group id) and stopped with
SIGINT, which is how `dagster dev`, the webserver and the daemon shut down their code servers;
whatever is left of a process group after a grace period is killed, so nothing outlives its
caller, and how each process ended is recorded so a test can assert a clean shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from batch_ml.cli import init_dagster_home

from .graphql import DAEMON_HEALTH
from .project import REPO

VENV_BIN = REPO / ".venv" / "bin"
# The daemons a backfill needs: the backfill loop and the run queue (dagster.yaml queues runs).
REQUIRED_DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")
# The repository's workspace file, relative to the services' working directory (REPO).
WORKSPACE = "workspace.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Webserver:
    """A serving Dagster webserver: its base URL, its log, and GraphQL as the UI sends it."""

    url: str
    log: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload["errors"]
        return payload["data"]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until the Dagster webserver at `url` answers; fail with the end of its `log` if
    `process` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not serve within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_process_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGINT the group of `process` (started in its own session); after `grace` seconds
    SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # The children (webserver, daemon, code servers) may outlive the parent: kill the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextlib.contextmanager
def make_ui(env: dict[str, str], log: Path, timeout: float = 120) -> Iterator[Webserver]:
    """Run the README's `make ui` with `env` (DAGSTER_HOME, BATCH_ML_CONFIG) on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "-s", "ui", f"UI_PORT={port}"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_serving(url, process, log, timeout)
            yield Webserver(url=url, log=log)
        finally:
            stop_process_group(process)


def dagster_home(folder: Path, run_monitoring: dict | None = None) -> Path:
    """A fresh DAGSTER_HOME holding a copy of the repository's dagster.yaml, with the given
    `run_monitoring` settings (e.g. a short poll interval) replacing the repository's."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", folder / "dagster.yaml")
    if run_monitoring:
        settings = yaml.safe_load((folder / "dagster.yaml").read_text())
        settings["run_monitoring"] = {**settings.get("run_monitoring", {}), **run_monitoring}
        (folder / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    # The webserver and the daemon start at once: the home's storage must exist before.
    return init_dagster_home(folder, folder / "dagster.yaml")


@dataclass
class Service:
    """One process started in its own session (its pid is its process group id)."""

    name: str
    process: subprocess.Popen
    log: Path
    # Filled in by wait_stopped() or kill(): True when the process and every process of its
    # group had ended within the grace period after SIGINT (nothing had to be killed).
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

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash: nothing can clean up); reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.returncode = self.process.wait(timeout=30)
        self.clean_exit = False

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


def start_service(name: str, args: list[str], env: dict[str, str], log: Path) -> Service:
    """Start `args` in the repository, in a session of its own, its output in `log`."""
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


def start_daemon(env: dict[str, str], log: Path, workspace: str | Path = WORKSPACE) -> Service:
    """`dagster-daemon run` on the code locations of `workspace`."""
    return start_service(
        "dagster-daemon",
        [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(workspace)],
        env,
        log,
    )


@dataclass
class DagsterServices:
    """A webserver and a daemon on one instance, as `daemon_and_webserver` started them."""

    webserver: Webserver
    daemon: Service
    webserver_process: Service
    # Seconds from start to: webserver answering /server_info; required daemons healthy.
    startup: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    workspace: str | Path = WORKSPACE
    # Daemons killed by `crash_daemon`, oldest first (their logs stay for the test to read).
    crashed: list[Service] = field(default_factory=list)

    def crash_daemon(
        self, while_down: Callable[[], None] | None = None, timeout: float = 120
    ) -> float:
        """SIGKILL the daemon with its process group (its code server and the run workers it
        launched: a crash, a reboot), call `while_down()`, then start a new daemon on the same
        instance and wait until it is healthy. Returns the seconds the new daemon took."""
        before = self.heartbeat_ids()
        self.daemon.kill()
        self.crashed.append(self.daemon)
        if while_down is not None:
            while_down()
        log = self.log_dir / f"daemon.{len(self.crashed)}.log"
        started = time.monotonic()
        self.daemon = start_daemon(self.env, log, self.workspace)
        # The killed daemon's last heartbeats still look healthy for a while: wait for the
        # new daemon's own heartbeat of every daemon the old one ran.
        deadline = started + timeout
        while any(self.heartbeat_ids().get(t) in (None, old) for t, old in before.items()):
            if self.daemon.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the new daemon did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        self.wait_for_daemons(max(1.0, deadline - time.monotonic()))
        return time.monotonic() - started

    def heartbeat_ids(self) -> dict[str, str]:
        """daemon type -> id of the daemon process whose heartbeat the instance holds."""
        with dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"]) as instance:
            return {t: h.daemon_id for t, h in instance.get_daemon_heartbeats().items()}

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
    """This process's environment for services on the instance in `home` with the project
    configuration `config`."""
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
    workspace: str | Path = WORKSPACE,
    extra_env: dict[str, str] | None = None,
) -> Iterator[DagsterServices]:
    """Run `dagster-webserver` (on 127.0.0.1, a free port) and `dagster-daemon run` on the
    instance in `home` with the project configuration `config`, both on the code locations of
    `workspace` and with `extra_env` added to their environment.

    The webserver starts first; `before_daemon(webserver)` runs once it serves and before the
    daemon starts, e.g. to stop a sensor that is running by default before its first tick.
    On exit both are interrupted and given `grace` seconds to stop."""
    env = {**service_env(home, config), **(extra_env or {})}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    running: list[Service] = []
    services: DagsterServices | None = None
    try:
        web = start_service(
            "dagster-webserver",
            [
                str(VENV_BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(workspace),
            ],
            env,
            log_dir / "webserver.log",
        )
        running.append(web)
        wait_until_serving(url, web.process, web.log, timeout)
        webserver = Webserver(url=url, log=web.log)
        serving = time.monotonic() - started
        if before_daemon is not None:
            before_daemon(webserver)
        daemon = start_daemon(env, log_dir / "daemon.log", workspace)
        running.append(daemon)
        services = DagsterServices(
            webserver, daemon, web, env=env, log_dir=log_dir, workspace=workspace
        )
        services.startup["webserver_serving"] = serving
        services.wait_for_daemons(max(1.0, timeout - (time.monotonic() - started)))
        services.startup["daemons_healthy"] = time.monotonic() - started
        yield services
    finally:
        stopping = time.monotonic()
        if services is not None:
            running = [services.webserver_process, services.daemon]
        for service in running:
            service.interrupt()
        for service in running:
            service.wait_stopped(stopping, stopping + grace)


def run_demo(config: Path, home: Path, timeout: float = 900) -> tuple[dict, str]:
    """`batch-ml --config CONFIG demo` as a user runs it, in its own process with
    DAGSTER_HOME=`home`: (its closing JSON summary, its whole stdout). A failed demo fails
    here with the end of its stderr."""

    env = {**os.environ, "DAGSTER_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "batch_ml.cli", "--config", str(config), "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"batch-ml demo failed ({out.returncode}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout
