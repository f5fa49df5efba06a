#!/usr/bin/env bash
# Make sure a headless Chromium is installed at /usr/bin/chromium (idempotent). The HTML timeline's
# browser test (tests/test_html_browser.py) drives it through Playwright; Playwright's own browser
# download is not reachable from our build machines, so the test launches Debian's chromium.
#
#   1. /usr/bin/chromium present      -> go to the check.
#   2. missing                        -> apt-get install chromium (non-interactive, as root or sudo).
#   3. check: `chromium --version`    -> print it, or fail naming the cause.
#
# Safe to run twice in a row. Needs root (or password-less sudo) only when it has to install.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
say() { echo "browser: $*"; }
die() { echo "browser: ERROR: $*" >&2; exit 1; }

if [ ! -x "$CHROMIUM" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO="sudo -n"
    else
      die "$CHROMIUM is missing and installing it needs root: apt-get install chromium (as root)"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "no $CHROMIUM and no apt-get: install Chromium at $CHROMIUM with your package manager"
  say "installing chromium from Debian (apt-get; about 45 s, 480 MB)"
  # Serialize with the other setup scripts' apt-get (dpkg takes one caller at a time).
  exec 9>"${TMPDIR:-/tmp}/massgen-apt.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  if [ ! -x "$CHROMIUM" ]; then
    $SUDO apt-get update -q </dev/null >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        chromium </dev/null >/dev/null
  fi
  [ -x "$CHROMIUM" ] || die "$CHROMIUM still not found after installing chromium"
fi

# Debian's wrapper script prints a harmless "[: … unexpected operator" line on some shells; keep stdout.
version="$("$CHROMIUM" --headless --no-sandbox --version 2>/dev/null)" \
  || die "$CHROMIUM is installed but does not start: run \`$CHROMIUM --headless --no-sandbox --version\` to see why"
say "ready: ${version}"
