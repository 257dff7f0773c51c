# Sourced by scripts/demo and scripts/test: make sure .venv exists and holds the
# current install of Veil (re-installs only when pyproject.toml changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VEIL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "Veil needs Python 3.11 or newer on PATH (or set PYTHON=...)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.veil-install-stamp"
# the C helpers (GMP kernel, OKVS) are built by the install, so their sources count too
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" $(find "$ROOT/src/veil" -name '*.[ch]' | sort) | sha256sum | cut -d' ' -f1)-$1"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing Veil ($1) into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if [ "$1" = "dev" ]; then
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  else
    "$VENV/bin/python" -m pip install -q -e "$ROOT"
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
