"""MassGen's Docker sandbox set-up keys (MassGen spec §4.2, ``_docker_manager.py``): what a container
gets besides the workspace.

``command_line_docker_credentials`` (:class:`DockerCredentials`):

- ``mount: [ssh_keys, git_config, gh_config, npm_config, pypi_config]``: the submitting user's
  ``~/.ssh``, ``~/.gitconfig``, ``~/.config/gh``, ``~/.npmrc``, ``~/.pypirc``, mounted read-only at the
  sandbox user's home (``/home/massgen``, as MassGen's image); one that does not exist is skipped with a
  warning, as in MassGen. The files must be readable by the sandbox user (uid 1000).
- ``additional_mounts: {HOST_PATH: {bind: CONTAINER_PATH, mode: ro|rw}}`` (mode default ``ro``).
- ``env_file`` (``KEY=VALUE`` lines, ``#`` comments, optional quotes and ``export``), filtered to
  ``env_vars_from_file`` when given; ``env_vars``: variables of the submitting process's environment
  (a missing one is skipped with a warning). They become the container's environment.
- ``pass_all_env`` (MassGen: the whole host environment, "dangerous") is refused: list the variables.

Resolved when the config is loaded (:func:`resolve`): mounts become host paths, the environment its
values. In ``run.submitted`` every value is a ``${secret:…}`` reference (``config.secret_ref``); the values
go to the secret store and the executor resolves them when it creates the container, so they never
enter the event log.

``command_line_docker_packages: {preinstall: {python: [...], npm: [...], system: [...]}}``
(:class:`DockerPackages`) is installed when the container starts, before its first command
(:func:`preinstall_steps`): system packages with ``apt-get`` as root, Python packages with ``pip`` into a
virtual environment on the ``PATH`` (``/home/massgen/.venv``, seeing the image's packages; the offline
images' Debian Python has no ``pip`` of its own), npm packages globally under the sandbox user's home.
Any entry ``pip``/``npm`` take works (``pkg==1.2``, a path to a wheel or a directory mounted in the
sandbox). Installing from an index needs the container's network (``command_line_docker_network_mode``);
a step that fails is recorded on ``sandbox.changed`` and the sandbox is used anyway, as in MassGen.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Literal

import msgspec

from massgen_es.errors import ConfigError

_log = logging.getLogger("massgen.config")

HOME = "/home/massgen"
"""The sandbox user's home in the sandbox images (and MassGen's)."""
VENV = f"{HOME}/.venv"
NPM_PREFIX = f"{HOME}/.npm-global"
STEP_TIMEOUT_S = 600.0
"""Seconds one install step may take (MassGen's)."""

CredentialKind = Literal["ssh_keys", "git_config", "gh_config", "npm_config", "pypi_config"]
CREDENTIALS: dict[str, str] = {
    "ssh_keys": ".ssh", "git_config": ".gitconfig", "gh_config": ".config/gh", "npm_config": ".npmrc",
    "pypi_config": ".pypirc",
}
"""Each ``mount`` kind: its path under the user's home, mounted at the same path under :data:`HOME`."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Mount(_Strict, frozen=True):
    """One bind mount of the sandbox: ``host`` (absolute) at ``bind``, ``ro`` or ``rw``."""

    bind: str
    mode: Literal["ro", "rw"] = "ro"
    host: str = ""
    """Filled in at load (the key of ``additional_mounts``, resolved)."""


class DockerCredentials(_Strict, frozen=True):
    """MassGen's ``command_line_docker_credentials`` (module docstring)."""

    mount: tuple[CredentialKind, ...] = ()
    additional_mounts: dict[str, Mount] = {}
    env_file: str | None = None
    env_vars: tuple[str, ...] = ()
    env_vars_from_file: tuple[str, ...] = ()
    pass_all_env: bool = False


class Preinstall(_Strict, frozen=True):
    """Package lists installed at container start."""

    python: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()
    system: tuple[str, ...] = ()


class DockerPackages(_Strict, frozen=True):
    """MassGen's ``command_line_docker_packages`` (module docstring)."""

    preinstall: Preinstall = Preinstall()


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (MassGen's parser: blank lines and ``#`` comments skipped,
    surrounding quotes removed; ``export KEY=...`` also read). Lines without ``=`` are skipped.

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read.
    """
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        key = key.removeprefix("export ").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def resolve(creds: DockerCredentials, where: str, origin: str) -> tuple[tuple[Mount, ...], dict[str, str]]:
    """The mounts (host paths resolved, missing ones skipped with a warning) and the environment (values)
    that ``creds`` describes, read now from the submitting user's home, files and environment.

    Raises:
        ConfigError: ``pass_all_env``, a missing or unreadable ``env_file``, or a mount inside the
            container that is not an absolute path; naming the key and the fix.
    """
    at = f"{where}.command_line_docker_credentials"
    if creds.pass_all_env:
        raise ConfigError(f"{origin}: `{at}.pass_all_env` would hand every variable of this machine's environment "
                          f"(every key and token) to the sandbox, which this system does not do; list the ones it "
                          f"needs in `{at}.env_vars`")
    mounts: list[Mount] = []
    for kind in dict.fromkeys(creds.mount):
        host = Path.home() / CREDENTIALS[kind]
        if host.exists():
            mounts.append(Mount(host=str(host), bind=f"{HOME}/{CREDENTIALS[kind]}"))
        else:
            _log.warning("%s: `%s.mount` %s: %s does not exist; not mounted", origin, at, kind, host)
    for host_path, m in creds.additional_mounts.items():
        if not m.bind.startswith("/"):
            raise ConfigError(f"{origin}: `{at}.additional_mounts` {host_path!r}: `bind` {m.bind!r} must be an "
                              "absolute path inside the container")
        host = Path(host_path).expanduser().resolve()
        if host.exists():
            mounts.append(msgspec.structs.replace(m, host=str(host)))
        else:
            _log.warning("%s: `%s.additional_mounts`: %s does not exist; not mounted", origin, at, host)
    env: dict[str, str] = {}
    if creds.env_file:
        path = Path(creds.env_file).expanduser()
        try:
            found = read_env_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{origin}: `{at}.env_file` {creds.env_file!r} cannot be read ({exc}); create it or fix "
                              "the path (relative paths start from the current directory)") from None
        keep = set(creds.env_vars_from_file)
        env.update({k: v for k, v in found.items() if not keep or k in keep})
    for name in creds.env_vars:
        if name in os.environ:
            env[name] = os.environ[name]
        else:
            _log.warning("%s: `%s.env_vars`: %s is not set in this environment; not passed", origin, at, name)
    return tuple(mounts), env


def check_packages(packages: DockerPackages, where: str, origin: str) -> None:
    """Every entry is a package spec, not an option (an entry starting with ``-`` would be one).

    Raises:
        ConfigError: naming the entry's key path.
    """
    pre = packages.preinstall
    for kind, names in (("python", pre.python), ("npm", pre.npm), ("system", pre.system)):
        for i, name in enumerate(names):
            if not name.strip() or name.lstrip().startswith("-"):
                key = f"{where}.command_line_docker_packages.preinstall.{kind}[{i}]"
                raise ConfigError(f"{origin}: `{key}` {name!r} is not a package name; give one package per entry, "
                                  "without options")


def environment(packages: DockerPackages, image_path: str) -> dict[str, str]:
    """What the container's environment needs for the preinstalled packages to be found: the venv's and
    npm's ``bin`` before the image's ``PATH``, and npm's global prefix."""
    pre = packages.preinstall
    if not (pre.python or pre.npm):
        return {}
    first = [f"{VENV}/bin"] if pre.python else []
    first += [f"{NPM_PREFIX}/bin"] if pre.npm else []
    env = {"PATH": ":".join([*first, image_path or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])}
    if pre.npm:
        env["NPM_CONFIG_PREFIX"] = NPM_PREFIX
    return env


def preinstall_steps(packages: DockerPackages) -> list[tuple[str, bool, str]]:
    """The install steps, in MassGen's order (system first: Python and npm packages may need it):
    ``(label, as_root, /bin/sh command)``."""
    pre = packages.preinstall
    q = " ".join
    steps: list[tuple[str, bool, str]] = []
    if pre.system:
        names = q(shlex.quote(n) for n in pre.system)
        steps.append((f"system: {' '.join(pre.system)}", True,
                      f"apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                      f"{names}"))
    if pre.python:
        names = q(shlex.quote(n) for n in pre.python)
        steps.append((f"python: {' '.join(pre.python)}", False,
                      f"{{ [ -x {VENV}/bin/pip ] || python3 -m venv --system-site-packages {VENV}; }} && "
                      f"{VENV}/bin/pip install --disable-pip-version-check --no-input {names}"))
    if pre.npm:
        names = q(shlex.quote(n) for n in pre.npm)
        steps.append((f"npm: {' '.join(pre.npm)}", False, f"npm install -g --no-fund --no-audit {names}"))
    return steps


__all__ = ["CREDENTIALS", "HOME", "DockerCredentials", "DockerPackages", "Mount", "Preinstall", "check_packages",
           "environment", "preinstall_steps", "read_env_file", "resolve"]
