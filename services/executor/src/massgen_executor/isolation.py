"""Local mode's sandbox: each command runs in Linux namespaces through bubblewrap (issue 13 item 2).

:func:`bwrap_argv` builds the ``bwrap`` command line that wraps ``/bin/sh -c <command>``:

- own PID, IPC, UTS and cgroup namespaces, and a network namespace with only loopback unless
  :attr:`Isolation.network`; its own ``/proc`` (only the sandbox's processes), a minimal ``/dev``, a
  private ``/tmp`` (a tmpfs of at most :data:`TMP_BYTES`);
- a root filesystem that holds only ``/usr`` (with the ``/bin``, ``/lib`` ... links), a few harmless
  files of ``/etc`` (:data:`ETC`; never ``shadow``), the workspace read-write and the context paths
  read-only, each at its own path; ``/`` is then remounted read-only, so nothing outside the workspace
  (and the throw-away ``/tmp``) can be written;
- an unprivileged user with no capabilities: uid/gid :data:`SANDBOX_UID` (``nobody``). When the
  executor runs as root, bwrap runs without a user namespace and ``setpriv`` drops to that uid for
  real, so the kernel's ``RLIMIT_NPROC`` (which it never enforces for root) bounds a fork bomb and
  root-only files stay unreadable; the workspace is then handed to that uid before each command
  (:func:`hand_over`). Otherwise bwrap maps the executor's own uid to it in a user namespace.
- an empty environment: bwrap starts with none at all (its own ``/proc/<pid>/environ`` is readable
  from inside, so it must not hold the executor's secrets), and the command gets only ``--setenv``
  values, which show in ``/proc/1/cmdline`` and so must never be secrets.

Where bwrap cannot run, :func:`require_bwrap` raises :class:`~massgen_es.errors.SandboxUnavailable`
naming the fix; the probe runs once per bwrap path and is cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from massgen_es.errors import SandboxUnavailable

SANDBOX_UID = 65534  # nobody/nogroup on Debian
TMP_BYTES = 256 << 20
ETC = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group",
    "nsswitch.conf", "ssl", "ca-certificates", "mime.types",
)
"""Entries of the host's ``/etc`` the sandbox sees (read-only): what programs need to start and to
name users; no credentials (``shadow``, ``gshadow``, keys) and nothing of the host's configuration."""
NETWORK_ETC = ("hosts", "resolv.conf", "host.conf", "gai.conf")
"""Added when the network is shared: name resolution."""
FIX = (
    "install bubblewrap (`make sandbox`, or `apt-get install bubblewrap` as root; in a container also "
    "`security_opt: [seccomp=unconfined, systempaths=unconfined]`), or opt in to running commands "
    "without isolation with `command_line_execution_mode: local_unisolated`"
)


@dataclass(frozen=True)
class Isolation:
    """Where a sandboxed command may write and read, and whether it has a network.

    Attributes:
        workspace: bound read-write at its own path (the command's ``work_dir`` must lie inside it).
        read_only: further directories bound read-only at their own paths (context paths, snapshots);
            the ones that do not exist are skipped.
        network: share the host's network namespace (backend key ``command_line_local_network``);
            otherwise the command has only its own loopback.
        bwrap: the ``bwrap`` program, a name looked up on the executor's ``PATH`` or a path.
    """

    workspace: Path
    read_only: tuple[Path, ...] = ()
    network: bool = False
    bwrap: str = "bwrap"
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    """Whether the executor is root (then ``setpriv`` drops the command to :data:`SANDBOX_UID`)."""


def _mkdirs(path: Path) -> list[str]:
    # bwrap creates a bind's missing parents with mode 0700 when run as root, which the unprivileged
    # command could not traverse: create them 0755 first.
    parents = [str(p) for p in reversed(path.parents) if str(p) != "/"]
    return [a for parent in parents for a in ("--perms", "0755", "--dir", parent)]


def bwrap_argv(
    iso: Isolation, command: str, *, work_dir: Path, env: Mapping[str, str], bwrap: str | None = None
) -> list[str]:
    """The full argv running ``/bin/sh -c command`` in ``work_dir`` inside the sandbox ``iso``.

    ``env`` is the command's whole environment, passed with ``--setenv`` (visible in the sandbox's
    ``/proc/1/cmdline``: no secrets). ``bwrap`` overrides :attr:`Isolation.bwrap` with a resolved path.
    """
    argv = [bwrap or iso.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not iso.network:
        argv.append("--unshare-net")
    if not iso.as_root:
        argv += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    argv += [
        "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
        "--perms", "0755", "--dir", "/etc",
    ]
    for name in ETC + (NETWORK_ETC if iso.network else ()):
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in iso.read_only:
        argv += [*_mkdirs(path), "--ro-bind-try", str(path), str(path)]
    argv += [*_mkdirs(iso.workspace), "--bind", str(iso.workspace), str(iso.workspace)]
    argv += ["--remount-ro", "/", "--chdir", str(work_dir), "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    if iso.as_root:
        argv += [
            "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        ]
    return [*argv, "/bin/sh", "-c", command]


_probed: dict[tuple[str, bool], str | SandboxUnavailable] = {}


def _probe(bwrap: str, as_root: bool) -> str:
    found = shutil.which(bwrap)
    if found is None:
        raise SandboxUnavailable(f"local mode isolates commands with bubblewrap, but `{bwrap}` is not installed: {FIX}")
    with tempfile.TemporaryDirectory(prefix="massgen-bwrap-probe-") as tmp:
        probe = Isolation(workspace=Path(tmp), bwrap=found, as_root=as_root)
        argv = bwrap_argv(probe, "true", work_dir=Path(tmp), env={})
        try:
            done = subprocess.run(argv, env={}, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"local mode could not start bubblewrap (`{found}`): {exc}; {FIX}") from exc
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        raise SandboxUnavailable(f"local mode cannot create a sandbox with bubblewrap (`{found}`): {why}; {FIX}")
    return found


def require_bwrap(iso: Isolation) -> str:
    """The resolved path of ``iso.bwrap``, after checking that it can run a sandbox here.

    The check (``bwrap ... true``, about 10 ms) runs once per bwrap name and uid kind; its outcome,
    failure included, is cached for the life of the process.

    Raises:
        SandboxUnavailable: bwrap is missing or cannot create namespaces here; the message names the fix
            (install bubblewrap, or ``command_line_execution_mode: local_unisolated``). Never a silent
            fallback to running without isolation.
    """
    key = (iso.bwrap, iso.as_root)
    if key not in _probed:
        try:
            _probed[key] = _probe(*key)
        except SandboxUnavailable as exc:
            _probed[key] = exc
    outcome = _probed[key]
    if isinstance(outcome, SandboxUnavailable):
        raise SandboxUnavailable(str(outcome))
    return outcome


def hand_over(workspace: Path) -> None:
    """Give ``workspace`` and everything in it to :data:`SANDBOX_UID`, so the root executor's command,
    dropped to that uid, can write there (root itself, the executor and the broker, still can).

    Only entries owned by someone else are changed; symlinks are changed themselves, never followed.
    """
    for root, dirs, files in os.walk(workspace):
        for name in (*dirs, *files):
            _own(Path(root, name))
    _own(workspace)


def _own(path: Path) -> None:
    try:
        st = path.lstat()
        if st.st_uid != SANDBOX_UID or st.st_gid != SANDBOX_UID:
            os.lchown(path, SANDBOX_UID, SANDBOX_UID)
    except FileNotFoundError:
        pass  # removed meanwhile
