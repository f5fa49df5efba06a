"""Docker mode: one container per agent per run, through the ``docker`` SDK (MassGen spec §4.2).

- Named ``massgen-<run>-<agent>`` and labelled with the run and agent, so parallel runs never collide
  (MassGen #463) and a restarted executor finds its orphans by label.
- Network ``none`` by default; memory, CPU and pids limits; optional read-only root filesystem (then
  ``/tmp`` is a tmpfs); the workspace mounted read-write and context paths read-only, at the same paths
  as on the host so paths in answers stay valid; commands run as the non-root sandbox user.
- The container idles (``sleep infinity``); each command is an ``exec``, killed by ``timeout -s KILL``
  inside the container when it runs too long. A container created ahead of its first command (when the
  run is submitted) makes that command warm.
- MassGen's set-up keys (``massgen_es.docker_setup``): credential mounts (read-only unless an
  ``additional_mounts`` entry says ``rw``), the environment from ``env_file``/``env_vars`` (given to the
  Engine API at creation, never in a command line), and the ``preinstall`` package lists, installed
  right after creation while the container's lock is held, so the first command finds them.

The SDK is synchronous: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import docker
import docker.errors

from massgen_es import docker_setup
from massgen_es.config import BackendConfig
from massgen_es.docker_setup import DockerPackages, Mount
from massgen_es.errors import SandboxUnavailable
from massgen_es.workspaces import SANDBOX_UID
from massgen_executor.result import ExecResult

LABEL = "massgen.executor"
RUN_LABEL = "massgen.run"
AGENT_LABEL = "massgen.agent"
_TIMEOUT_EXIT = 137  # 128 + SIGKILL from `timeout -s KILL`


@dataclass(frozen=True)
class SandboxSpec:
    """The container settings of one agent (from its ``command_line_docker_*`` keys)."""

    image: str
    dockerfile: str | None = None
    network: str = "none"
    mem_limit: str | None = None
    nano_cpus: int | None = None
    pids_limit: int = 256
    read_only: bool = False
    mounts: tuple[Mount, ...] = ()
    packages: DockerPackages | None = None

    @classmethod
    def of(cls, b: BackendConfig) -> SandboxSpec:
        """The sandbox a backend's ``command_line_docker_*`` settings describe."""
        cpu = b.command_line_docker_cpu_limit
        return cls(
            mounts=b.resolved_docker_mounts,
            packages=b.command_line_docker_packages,
            image=b.command_line_docker_image,
            dockerfile=b.command_line_docker_dockerfile,
            network=b.command_line_docker_network_mode,
            mem_limit=b.command_line_docker_memory_limit,
            nano_cpus=int(cpu * 1e9) if cpu else None,
            pids_limit=b.command_line_docker_pids_limit,
            read_only=b.command_line_docker_read_only,
        )


def container_name(run_id: str, agent_id: str) -> str:
    """``massgen-<run>-<agent>`` with characters Docker refuses replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"massgen-{run_id}-{agent_id}")


def _cap(data: bytes, limit: int) -> tuple[bytes, bool]:
    return (data[:limit], True) if len(data) > limit else (data, False)


class DockerSandboxes:
    """The executor's containers.

    Raises (from every method):
        SandboxUnavailable: no Docker engine answers (the message says how to start one or switch to
            ``command_line_execution_mode: local``), or the image is missing and cannot be built.
    """

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._built: set[tuple[str, str]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def client(self) -> docker.DockerClient:
        """The Docker client, connected (and the engine pinged) on first use."""
        if self._client is None:
            try:
                client = docker.from_env(timeout=30)
                client.ping()
            except Exception as exc:
                raise SandboxUnavailable(
                    "Docker mode is configured (command_line_execution_mode: docker) but no Docker engine "
                    f"answers ({exc.__class__.__name__}: {exc}); start one (`bash scripts/docker-engine.sh`, "
                    "or set DOCKER_HOST) or set `command_line_execution_mode: local`"
                ) from None
            self._client = client
        return self._client

    async def ensure(
        self, run_id: str, agent_id: str, spec: SandboxSpec, workspace: Path, read_only_paths: list[Path],
        env: Mapping[str, str] | None = None,
    ) -> tuple[str, bool, str]:
        """The running container of ``agent_id`` in ``run_id``: ``(name, created now, preinstall report)``;
        ``env`` is its environment (values: secrets, never logged). The report has one ``label: ok`` or
        ``label: failed (...)`` line per install step run now (:func:`_preinstall`)."""
        name = container_name(run_id, agent_id)
        async with self._locks.setdefault(name, asyncio.Lock()):
            return await asyncio.to_thread(self._ensure, name, run_id, agent_id, spec, workspace, read_only_paths,
                                           dict(env or {}))

    def _ensure(
        self, name: str, run_id: str, agent_id: str, spec: SandboxSpec, workspace: Path, ro: list[Path],
        env: dict[str, str],
    ) -> tuple[str, bool, str]:
        client = self.client()
        try:
            existing = client.containers.get(name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            if existing.status == "running":
                return name, False, ""
            existing.remove(force=True)
        self._image(client, spec)
        volumes = {str(workspace): {"bind": str(workspace), "mode": "rw"}}
        volumes.update({str(p): {"bind": str(p), "mode": "ro"} for p in ro if p.exists()})
        volumes.update({m.host: {"bind": m.bind, "mode": m.mode} for m in spec.mounts})
        if spec.packages is not None:
            image_env = client.images.get(spec.image).attrs.get("Config", {}).get("Env") or []
            image_path = next((e.split("=", 1)[1] for e in image_env if e.startswith("PATH=")), "")
            env = {**env, **docker_setup.environment(spec.packages, image_path)}
        try:
            client.containers.run(
                spec.image,
                ["sleep", "infinity"],
                name=name,
                detach=True,
                labels={LABEL: "1", RUN_LABEL: run_id, AGENT_LABEL: agent_id},
                network_mode=spec.network,
                mem_limit=spec.mem_limit,
                nano_cpus=spec.nano_cpus,
                pids_limit=spec.pids_limit,
                read_only=spec.read_only,
                tmpfs={"/tmp": "rw,size=256m"} if spec.read_only else None,
                user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                working_dir=str(workspace),
                volumes=volumes,
                environment=env or None,
                init=True,  # reaps zombies of backgrounded commands
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # created concurrently by another executor: use it
                return name, False, ""
            raise SandboxUnavailable(
                f"cannot start sandbox {name} from {spec.image}: {exc.explanation or exc}"
            ) from None
        return name, True, self._preinstall(name, spec, workspace)

    def _preinstall(self, name: str, spec: SandboxSpec, workspace: Path) -> str:
        """Run the ``preinstall`` steps (``docker_setup.preinstall_steps``) in the new container; one report
        line per step. A failed step does not stop the others or the sandbox (MassGen's rule); without a
        network it fails as the package tool reports it, which the report says."""
        if spec.packages is None:
            return ""
        lines: list[str] = []
        for label, as_root, command in docker_setup.preinstall_steps(spec.packages):
            user = "0:0" if as_root else f"{SANDBOX_UID}:{SANDBOX_UID}"
            result = self._exec(name, command, workspace, docker_setup.STEP_TIMEOUT_S, 64 << 10, user=user)
            if result.exit_code == 0:
                lines.append(f"{label}: ok ({result.duration_s:.1f} s)")
                continue
            tail = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()[-3:]
            why = "timed out" if result.timed_out else f"exit {result.exit_code}"
            offline = " (the sandbox has no network: command_line_docker_network_mode is none)" if (
                spec.network == "none") else ""
            lines.append(f"{label}: failed ({why}){offline}: {' | '.join(tail)[:400]}")
        return "\n".join(lines)

    def _image(self, client: docker.DockerClient, spec: SandboxSpec) -> None:
        if spec.dockerfile:
            path = Path(spec.dockerfile)
            key = (spec.image, f"{path}:{path.stat().st_mtime_ns if path.exists() else 0}")
            if key not in self._built:
                if not path.is_file():
                    raise SandboxUnavailable(f"command_line_docker_dockerfile {path} does not exist")
                client.images.build(path=str(path.parent), dockerfile=path.name, tag=spec.image, rm=True)
                self._built.add(key)
            return
        try:
            client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"sandbox image {spec.image} is not present; build the sandbox images with "
                "`bash scripts/sandbox-images.sh` (make install does), or set command_line_docker_dockerfile"
            ) from None

    async def exec(
        self, name: str, command: str, *, work_dir: Path, timeout_s: float, max_bytes: int,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run ``command`` with ``/bin/sh -c`` in container ``name`` as the sandbox user, with ``env`` added
        to its environment (through the Engine API: not in the command line)."""
        return await asyncio.to_thread(self._exec, name, command, work_dir, timeout_s, max_bytes, env)

    def _exec(
        self, name: str, command: str, work_dir: Path, timeout_s: float, max_bytes: int,
        env: Mapping[str, str] | None = None, user: str = f"{SANDBOX_UID}:{SANDBOX_UID}",
    ) -> ExecResult:
        container = self.client().containers.get(name)
        started = time.monotonic()
        argv = ["timeout", "-s", "KILL", f"{timeout_s:g}", "/bin/sh", "-c", command]
        # Not detached and demuxed, exec_run returns (exit code, (stdout or None, stderr or None)); the
        # docker stub's ExecResult only has the other shapes (exit code maybe None, output bytes or a stream).
        code, (out, err) = cast(
            "tuple[int, tuple[bytes | None, bytes | None]]",
            container.exec_run(argv, workdir=str(work_dir), user=user, demux=True,
                               environment=dict(env) if env else None),
        )
        out, out_cut = _cap(out or b"", max_bytes)
        err, err_cut = _cap(err or b"", max_bytes)
        duration = time.monotonic() - started
        timed_out = code == _TIMEOUT_EXIT and duration >= timeout_s * 0.95
        return ExecResult(
            exit_code=code, stdout=out, stderr=err, duration_s=duration, timed_out=timed_out,
            stdout_truncated=out_cut, stderr_truncated=err_cut,
        )

    async def remove(self, name: str) -> bool:
        """Remove a container (idempotent); True if it existed."""
        def go() -> bool:
            try:
                self.client().containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                return False
            return True

        return await asyncio.to_thread(go)

    async def labelled(self) -> list[tuple[str, str, str]]:
        """``(run_id, agent_id, name)`` of every container this system created."""
        def go() -> list[tuple[str, str, str]]:
            # The low-level list, not ``containers.list``: that one inspects each container after listing
            # and raises NotFound for one removed in between (a run's sandbox ending as the reaper looks).
            found = self.client().api.containers(all=True, filters={"label": LABEL})
            return [(c["Labels"].get(RUN_LABEL, ""), c["Labels"].get(AGENT_LABEL, ""), c["Names"][0].lstrip("/"))
                    for c in found]

        return await asyncio.to_thread(go)
