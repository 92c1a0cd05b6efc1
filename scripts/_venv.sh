# Shared by scripts/serve and scripts/test: make sure .venv exists with thingcore installed.
# Usage: [VENV_EXTRAS=test] . scripts/_venv.sh   leaves $VENV set. The extras come from a variable, never from
# the positional arguments: a script sourcing this file with none passes its own caller's (scripts/serve --help).
# THINGCORE_VENV=/path/to/venv uses that environment as it is when thingcore is already installed in it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${THINGCORE_VENV:-$ROOT/.venv}"
extras="${VENV_EXTRAS:-}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi; }

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: thingcore needs Python >= 3.11 (python3 is $(python3 --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "installing python3-venv (Debian package)..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv "$VENV"
fi
if [ -n "${THINGCORE_VENV:-}" ] && [ -z "$extras" ] && [ -x "$VENV/bin/thingcore" ]; then
  return 0 2>/dev/null || exit 0
fi
spec="$ROOT"
[ -n "$extras" ] && spec="$ROOT[$extras]"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
