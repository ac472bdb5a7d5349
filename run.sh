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

missing() {  # which of Debian's packages $@ are not installed (chromium: the browser tests; libtcmalloc-minimal4:
            # the allocator of faircam's heavy processes, faircam/allocator.py)
  local pkg
  for pkg in "$@"; do
    case $pkg in
      chromium) command -v chromium >/dev/null || echo "$pkg" ;;
      libtcmalloc-minimal4) ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4 || echo "$pkg" ;;
    esac
  done
}

system_packages() {  # install Debian's packages $@ that are missing, when we may (root, apt-get)
  local wanted
  wanted=$(missing "$@")
  [[ -z "$wanted" ]] && return
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    # shellcheck disable=SC2086
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $wanted >/dev/null; } ||
      echo "run.sh: could not install $wanted" >&2
  else
    echo "run.sh: not installed: $wanted (apt-get install $wanted). Without chromium the browser tests fail;" \
      "without libtcmalloc-minimal4 faircam runs on glibc's allocator, slower (README, Performance)." >&2
  fi
}

case "${1:-}" in
  app)
    install requirements.txt
    system_packages libtcmalloc-minimal4
    exec "$VENV/bin/python" -m faircam.allocator "$VENV/bin/streamlit" run app.py --server.port "${PORT:-8501}" "${@:2}"
    ;;
  test)
    install requirements-dev.txt
    system_packages chromium libtcmalloc-minimal4
    "$VENV/bin/ruff" check .
    exec "$VENV/bin/python" -m pytest "${@:2}"
    ;;
  *)
    echo "usage: bash run.sh app | test [pytest args]" >&2
    exit 64
    ;;
esac
