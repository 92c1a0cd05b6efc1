# Shared by scripts/serve and scripts/test: make sure .venv exists with thingcore installed.
# Usage: . scripts/_venv.sh [extras]   (extras e.g. "test"); leaves $VENV set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${THINGCORE_VENV:-$ROOT/.venv}"
extras="${1:-}"

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
spec="$ROOT"
[ -n "$extras" ] && spec="$ROOT[$extras]"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
