#!/usr/bin/env bash
# faircam's two commands:  `bash run.sh app`  (install, then start the dashboard)
#                          `bash run.sh test` (install, then run the checks and tests)
# Both install into ./.venv on first use and again whenever a requirements file changes.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

install() {  # $1: requirements file
  local stamp="$VENV/.installed-$(basename "$1")"
  local want
  want=$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$1"
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  # pip compiles the packages it installs, not an editable checkout: a cold server's first page would pay it.
  "$VENV/bin/python" -m compileall -q app.py pages faircam
  echo "$want" > "$stamp"
  # The dev requirements include the app's, so the app's install is done too (no reinstall on `run.sh app`).
  [[ "$1" == requirements-dev.txt ]] && echo "$want" > "$VENV/.installed-requirements.txt"
  return 0
}

browser() {  # Debian's Chromium for the browser tests, when it is missing and we may install it
  if command -v chromium >/dev/null; then return; fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "run.sh: chromium is not installed; browser tests will fail (apt-get install chromium)" >&2
  fi
}

case "${1:-}" in
  app)
    install requirements.txt
    exec "$VENV/bin/streamlit" run app.py --server.port "${PORT:-8501}" "${@:2}"
    ;;
  test)
    install requirements-dev.txt
    browser
    "$VENV/bin/ruff" check .
    exec "$VENV/bin/python" -m pytest "${@:2}"
    ;;
  *)
    echo "usage: bash run.sh app | test [pytest args]" >&2
    exit 64
    ;;
esac
