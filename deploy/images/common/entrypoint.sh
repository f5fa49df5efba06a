#!/bin/sh
# Entrypoint of the MassGen service images: `massgen <args>` (default `serve <service>`).
#
# umask 0002: workspaces under MASSGEN_HOME are created group-writable. The data directory is setgid
# to group 1000 (scripts/compose-up.sh), the group of the executor's sandbox user (uid/gid 1000), so
# a sandbox can write into a workspace this service (uid 10001) created.
umask "${MASSGEN_UMASK:-0002}"
exec /opt/venv/bin/massgen "$@"
