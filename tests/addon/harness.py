# SPDX-License-Identifier: LGPL-2.1-or-later
"""The sockbridge add-on under Docker, as the Supervisor runs it.

- PrivateDocker: a dockerd of our own (private data root, own socket, no
  bridge, no firewall rules), one at a time on the machine (a lock),
  stopped by its PID.
- base_image(): a Debian 12 base image made from scripts/debian-root's
  bookworm root, without the root's build and test packages, imported once
  per content of the root (its tag carries a hash).
- addon_image(): the add-on built from a build context of
  scripts/stage-addon --context, with that base as BUILD_FROM.
- StandInSupervisor: an HTTP server on a loopback address that records
  what the add-on POSTs; containers reach it as http://supervisor.
- Addon: runs the add-on like the Supervisor does (host network,
  /share, /data, /ssl, SUPERVISOR_TOKEN, extra host "supervisor").

Run as a command it is the hook for tests with a real Home Assistant
(scripts/run-addon): it brings the add-on up and runs a command while the
add-on runs; see main().
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
import contextlib
from dataclasses import dataclass, field
import errno
import fcntl
import hashlib
import http.server
import json
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO / "sockbridge"
IMAGE = "sockbridge-addon:test"
BUILD_STAGE_IMAGE = "sockbridge-addon:test-build-stage"
BASE_REPOSITORY = "sockbridge-base"
BUS_NAME = "io.github.Sockbridge1"
OBJECT_PATH = "/io/github/Sockbridge1"
INTERFACE = "io.github.Sockbridge1"

# Where the private dockerd keeps its images and build cache, kept between
# runs so that an unchanged add-on is not built again.
CACHE = Path(os.environ.get("SB_DOCKER_CACHE", "/var/cache/sockbridge/docker"))
# Its sockets and PID file: short paths on tmpfs.
RUN_DIR = Path(os.environ.get("SB_DOCKER_RUN", "/run/sockbridge-docker"))
# The docker.io package's client, which matches its dockerd (another
# client earlier in PATH may speak another API version).
DOCKER = os.environ.get("SB_DOCKER", "/usr/bin/docker")
DOCKERD = os.environ.get("SB_DOCKERD", "/usr/sbin/dockerd")

# What base_image() removes from the root: the packages scripts/debian-root
# added for builds and tests (listed in the root), keeping ca-certificates.
# Changing this recipe changes the base image's tag.
BASE_RECIPE = "purge root packages but ca-certificates; autoremove; drop apt lists; v1"


def as_root(argv: Sequence[str]) -> None:
    """Runs the program again through sudo unless root already (dockerd needs
    root), keeping the SB_* settings, as scripts/in-root does."""
    if os.geteuid() == 0 or not shutil.which("sudo"):
        return
    keep = [f"{k}={v}" for k, v in os.environ.items() if k.startswith(("SB_", "SOCKBRIDGE_"))]
    os.execvp("sudo", ["sudo", "--", "env", *keep, sys.executable, *argv])


def exit_on_sigterm() -> None:
    """SIGTERM (meson's timeout, a CI's cancel) unwinds like Ctrl-C does, so
    that containers and dockerd are stopped on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def log(message: str) -> None:
    """Progress on stderr (stdout is the test's TAP stream)."""
    print(f"# {message}", file=sys.stderr, flush=True)


class DockerError(RuntimeError):
    """A docker command failed; the message holds its output."""


# --------------------------------------------------------------------------
# The private Docker daemon


class PrivateDocker:
    """A dockerd of our own, started on enter and stopped by PID on exit."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.socket = RUN_DIR / "docker.sock"
        self.pidfile = RUN_DIR / "dockerd.pid"
        self.config_dir = Path(tempfile.mkdtemp(prefix="sb-docker-config."))
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            # Nothing of the machine's own docker configuration.
            "DOCKER_CONFIG": str(self.config_dir),
            # dockerd 20.10's classic builder: no buildx plugin needed.
            "DOCKER_BUILDKIT": "0",
        }
        self._lock: Any = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateDocker:
        if os.geteuid() != 0:
            raise DockerError("the add-on tests need root: they start a Docker daemon")
        for program in (DOCKER, DOCKERD):
            if not os.access(program, os.X_OK):
                raise DockerError(f"no {program}: install docker.io (scripts/install-deps --test)")
        CACHE.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self._lock = (CACHE / "lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another run of the add-on tests ({CACHE / 'lock'})")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._stop_leftover()
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._proc is not None:
                self._remove_containers()
                self._terminate(self._proc.pid, self._proc)
                self._proc = None
            self._unmount_namespaces()
        finally:
            shutil.rmtree(self.config_dir, ignore_errors=True)
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    @staticmethod
    def _unmount_namespaces() -> None:
        """dockerd leaves its network namespace bind mounts (netns/default) behind."""
        netns = RUN_DIR / "exec" / "netns"
        for path in netns.iterdir() if netns.is_dir() else ():
            if os.path.ismount(path):
                subprocess.run(["umount", str(path)], check=False)

    def _stop_leftover(self) -> None:
        """A dockerd of a killed earlier run (we hold the lock: nobody else's)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if f"--data-root={CACHE / 'data'}".encode() in cmdline:
            log(f"stopping the dockerd of an earlier run (PID {pid})")
            self._terminate(pid, None)

    def _start(self) -> None:
        args = [
            DOCKERD,
            f"--data-root={CACHE / 'data'}",
            f"--exec-root={RUN_DIR / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            # Host network only: no bridge, no firewall rules, no sysctls.
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--log-level=warn",
        ]
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.socket.exists() and self.run("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise DockerError(f"dockerd did not start; its log ends:\n{tail}")

    def _remove_containers(self) -> None:
        ids = self.run("ps", "-aq", "--filter", "label=sockbridge-test", check=False)
        if ids.stdout.split():
            self.run("rm", "-f", *ids.stdout.split(), check=False)

    @staticmethod
    def _terminate(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()

    def run(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Runs the docker client; DockerError with its output when check fails."""
        result = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0


# --------------------------------------------------------------------------
# Images


def _root_digest(root: Path) -> str:
    """A hash over the root's every path, type, size, mtime, mode and owner."""
    listing = subprocess.run(
        [
            "find",
            ".",
            "-xdev",
            "(",
            "-path",
            "./proc/*",
            "-o",
            "-path",
            "./sys/*",
            "-o",
            "-path",
            "./dev/*",
            "-o",
            "-path",
            "./tmp/*",
            "-o",
            "-path",
            "./run/*",
            ")",
            "-prune",
            "-o",
            "-printf",
            "%p\t%y\t%s\t%T@\t%m\t%U\t%G\t%l\n",
        ],
        cwd=root,
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    digest = hashlib.sha256(BASE_RECIPE.encode())
    digest.update(b"\n".join(sorted(listing.splitlines())))
    return digest.hexdigest()


def base_image(docker: PrivateDocker) -> str:
    """The base image from the bookworm root, imported when missing."""
    root = Path(
        subprocess.run(
            [str(REPO / "scripts" / "debian-root"), "bookworm"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    tag = f"{BASE_REPOSITORY}:bookworm-{_root_digest(root)[:16]}"
    if docker.has_image(tag):
        return tag
    log(f"making the base image {tag} from {root}")
    work = Path(tempfile.mkdtemp(prefix="base.", dir=CACHE))
    try:
        copy = work / "root"
        # The cached root stays as it is: the copy loses the packages.
        subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
        script = (
            "set -e; export DEBIAN_FRONTEND=noninteractive; "
            "apt-get purge -y -q $(grep -vx ca-certificates /var/lib/sockbridge-root/packages); "
            "apt-get autoremove --purge -y -q; apt-get clean; "
            "rm -rf /var/lib/apt/lists/* /var/lib/sockbridge-root /root/.cache"
        )
        purge = subprocess.run(
            [str(REPO / "scripts" / "in-root"), "--root-dir", str(copy), "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        if purge.returncode != 0:
            raise DockerError(f"removing packages from the base failed:\n{purge.stdout[-3000:]}")
        tar = subprocess.Popen(
            [
                "tar",
                "-C",
                str(copy),
                "--numeric-owner",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./dev/*",
                "-cf",
                "-",
                ".",
            ],
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            [
                DOCKER,
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["/bin/bash"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            env=docker.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise DockerError(f"docker import failed:\n{imported.stderr[-3000:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Earlier base images (of an older root) are of no more use.
    for line in docker.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if line.startswith(f"{BASE_REPOSITORY}:") and line != tag:
            docker.run("rmi", line, check=False)
    return tag


def addon_version() -> str:
    """The version in config.yaml (its one `version:` line)."""
    for line in (ADDON_DIR / "config.yaml").read_text().splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise ValueError("no version in sockbridge/config.yaml")


def addon_image(docker: PrivateDocker, base: str, build_log: Path) -> str:
    """Builds the add-on (cached: unchanged sources reuse every layer)."""
    with tempfile.TemporaryDirectory(prefix="sb-addon-context.") as context:
        subprocess.run(
            [str(REPO / "scripts" / "stage-addon"), "--context", context],
            check=True,
        )
        output = ""
        # The build stage gets a tag of its own: its layers are the cache of
        # the next build, and untagged they would go with the prune below.
        for target in (["--target", "build", "--tag", BUILD_STAGE_IMAGE], ["--tag", IMAGE]):
            result = docker.run(
                "build",
                "--network=host",
                "--build-arg",
                f"BUILD_FROM={base}",
                "--build-arg",
                f"BUILD_VERSION={addon_version()}",
                *target,
                context,
                check=False,
                timeout=3600,
            )
            output += result.stdout + result.stderr
            build_log.write_text(output)
            if result.returncode != 0:
                raise DockerError(
                    "building the add-on failed; the build's output ends:\n"
                    f"{result.stdout[-4000:]}{result.stderr[-2000:]}"
                )
    # What earlier builds left untagged.
    docker.run("image", "prune", "--force", check=False)
    return IMAGE


# --------------------------------------------------------------------------
# The stand-in Supervisor


@dataclass
class Request:
    """One request the stand-in Supervisor received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StandInSupervisor:
    """Answers POST /discovery as the Supervisor does, and records requests.

    It listens on port 80 of a loopback address (127.x.y.z: a host network
    container reaches the host's loopback) that containers are given as the
    host name "supervisor", as the Supervisor gives its own address.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._changed = threading.Condition()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with recorder._changed:
                    recorder.requests.append(
                        Request("POST", self.path, dict(self.headers.items()), body)
                    )
                    recorder._changed.notify_all()
                if self.path == "/discovery":
                    reply = {"result": "ok", "data": {"uuid": "0123456789abcdef" * 2}}
                    self.send_response(200)
                else:
                    reply = {"result": "error", "message": "not found"}
                    self.send_response(404)
                data = json.dumps(reply).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = self._bind(Handler)
        self.address = str(self.server.server_address[0])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _bind(
        handler: type[http.server.BaseHTTPRequestHandler],
    ) -> http.server.ThreadingHTTPServer:
        candidates = ["127.31.32.2"] + [
            f"127.{random.randint(32, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
            for _ in range(8)
        ]
        for address in candidates:
            try:
                return http.server.ThreadingHTTPServer((address, 80), handler)
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "no free loopback address for port 80")

    def __enter__(self) -> StandInSupervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def wait_for(self, path: str, timeout: float) -> Request | None:
        """The first request for path, waiting at most timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for request in self.requests:
                    if request.path == path:
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)


# --------------------------------------------------------------------------
# Running the add-on


@dataclass
class Folders:
    """The host folders the Supervisor would map: /share, /data, /ssl."""

    base: Path
    share: Path = field(init=False)
    data: Path = field(init=False)
    ssl: Path = field(init=False)

    def __post_init__(self) -> None:
        # Readable by all, so that a test for the bus policy is not stopped
        # by a directory's mode first.
        self.base.mkdir(exist_ok=True)
        self.base.chmod(0o755)
        self.share, self.data, self.ssl = (self.base / n for n in ("share", "data", "ssl"))
        for path in (self.share, self.data, self.ssl):
            path.mkdir(mode=0o755, exist_ok=True)
            path.chmod(0o755)

    @property
    def socket(self) -> Path:
        return self.share / "sockbridge" / "bus"

    @property
    def address(self) -> str:
        """The bus address seen from the host."""
        return f"unix:path={self.socket}"

    def write_options(self, options: dict[str, Any]) -> None:
        (self.data / "options.json").write_text(json.dumps(options))


_serial = 0


@dataclass
class Container:
    """A run of the add-on: one container, as each Supervisor start makes."""

    docker: PrivateDocker
    name: str

    def logs(self) -> str:
        result = self.docker.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_log(self, text: str, timeout: float) -> str:
        """The log once it holds text (or after timeout, as it is then)."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs()
            if text in logs or time.monotonic() >= deadline:
                return logs
            time.sleep(0.1)

    def state(self) -> dict[str, Any]:
        result = self.docker.run("inspect", "--format", "{{json .State}}", self.name)
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the container stopped, None after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"]:
                return int(state["ExitCode"])
            time.sleep(0.1)
        return None

    def exec(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.docker.run("exec", self.name, *args, check=check)

    def pids(self, program: str) -> list[int]:
        """PIDs (inside the container) of the processes named program."""
        script = (
            'for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = "$1" ] && '
            'echo "${d#/proc/}"; done; true'
        )
        result = self.exec("sh", "-c", script, "sh", program)
        if result.returncode != 0:
            return []  # the container is gone (docker exec says why on stdout)
        return [int(p) for p in result.stdout.split() if p.isdigit()]

    def cmdline(self, pid: int) -> list[str]:
        result = self.exec("cat", f"/proc/{pid}/cmdline")
        return [a for a in result.stdout.split("\0") if a]

    def kill_program(self, program: str, sig: str = "KILL") -> list[int]:
        pids = self.pids(program)
        for pid in pids:
            # The shell's kill: the image need not have /bin/kill (procps).
            # A failure shows in what the caller checks next (a new PID).
            self.exec("sh", "-c", f'kill -{sig} "$1"', "sh", str(pid))
        return pids

    def stop(self, timeout: int = 10) -> float:
        """docker stop, as the Supervisor stops an add-on; seconds taken."""
        start = time.monotonic()
        self.docker.run("stop", "--time", str(timeout), self.name, check=False)
        return time.monotonic() - start

    def remove(self) -> None:
        self.docker.run("rm", "--force", self.name, check=False)


def run_addon(
    docker: PrivateDocker,
    folders: Folders,
    *,
    supervisor: StandInSupervisor | None = None,
    token: str | None = None,
    mount_share: bool = True,
    data_read_only: bool = False,
    image: str = IMAGE,
) -> Container:
    """Starts the add-on as the Supervisor would, detached."""
    global _serial
    _serial += 1
    name = f"sockbridge-test-{os.getpid()}-{_serial}"
    args = [
        "run",
        "--detach",
        "--name",
        name,
        "--label",
        "sockbridge-test=1",
        "--network=host",
        "--volume",
        f"{folders.data}:/data{':ro' if data_read_only else ''}",
        "--volume",
        f"{folders.ssl}:/ssl:ro",
    ]
    if mount_share:
        args += ["--volume", f"{folders.share}:/share"]
    if supervisor is not None:
        args += ["--add-host", f"supervisor:{supervisor.address}"]
    if token is not None:
        args += ["--env", f"SUPERVISOR_TOKEN={token}"]
    docker.run(*args, image)
    return Container(docker, name)


def bus_ready(address: str, timeout: float) -> bool:
    """True once sockbridged owns its name on the bus at address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [
                "dbus-send",
                f"--bus={address}",
                "--print-reply=literal",
                "--reply-timeout=2000",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                f"string:{BUS_NAME}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and "true" in result.stdout:
            return True
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------
# The hook: the add-on running while a command runs


@contextlib.contextmanager
def addon_running(
    share: Path | None, log_level: str, workdir: Path
) -> Iterator[tuple[Folders, Container, StandInSupervisor]]:
    """The add-on up (images built as needed) until the block ends."""
    with PrivateDocker(workdir / "dockerd.log") as docker:
        base = base_image(docker)
        addon_image(docker, base, workdir / "build.log")
        folders = Folders(workdir)
        if share is not None:
            share.mkdir(parents=True, exist_ok=True)
            folders.share = share
        folders.write_options({"log_level": log_level})
        with StandInSupervisor() as supervisor:
            container = run_addon(docker, folders, supervisor=supervisor, token="sb-hook-token")
            try:
                if not bus_ready(folders.address, 30):
                    raise DockerError(f"the add-on did not come up; its log:\n{container.logs()}")
                supervisor.wait_for("/discovery", 15)
                yield folders, container, supervisor
            finally:
                container.stop()
                sys.stderr.write(container.logs())
                container.remove()


def main(argv: Sequence[str] | None = None) -> int:
    """scripts/run-addon: run a command while the add-on runs."""
    parser = argparse.ArgumentParser(
        prog="scripts/run-addon",
        description=(
            "Builds the add-on (cached), runs it under a private dockerd like the "
            "Supervisor does, with a stand-in Supervisor, and runs COMMAND while it "
            "runs. COMMAND gets SB_ADDON_SHARE (the host folder mounted as /share), "
            "SB_ADDON_ADDRESS (the bus address from the host), SB_ADDON_DISCOVERY "
            "(the JSON the add-on POSTed to /discovery), SB_ADDON_CONTAINER and "
            "DOCKER_HOST (to reach the container with /usr/bin/docker). Everything "
            "is stopped when COMMAND ends; its status is the exit status."
        ),
    )
    parser.add_argument("--share", type=Path, help="host folder for /share (default: temporary)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("command", nargs="+", help="the command to run (after --)")
    args = parser.parse_args(argv)
    as_root([__file__, *(sys.argv[1:] if argv is None else argv)])
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="sb-run-addon.") as tmp:
        try:
            with addon_running(args.share, args.log_level, Path(tmp)) as (folders, container, sup):
                request = sup.wait_for("/discovery", 0)
                env = {
                    **os.environ,
                    "SB_ADDON_SHARE": str(folders.share),
                    "SB_ADDON_ADDRESS": folders.address,
                    "SB_ADDON_DISCOVERY": request.body.decode() if request else "",
                    "SB_ADDON_CONTAINER": container.name,
                    "DOCKER_HOST": container.docker.env["DOCKER_HOST"],
                }
                log(f"add-on running: {folders.address}")
                return subprocess.run(args.command, env=env, check=False).returncode
        except DockerError as err:
            log(str(err))
            return 1


if __name__ == "__main__":
    sys.exit(main())
