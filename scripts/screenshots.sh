#!/usr/bin/env bash
# The README's screenshots on virtual X screens (Debian: apt-get install xvfb): every panel on a
# 1366×768 laptop screen, and the Advisor and the Chat in a half-screen tile (960×1000) and at
# 1920×1080 too; light and dark. One app process per size and theme (scripts/screenshots.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
start_xvfb() {  # $1: the screen, WxH; sets XDISPLAY to the free display Xvfb took
  local fifo
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  Xvfb -displayfd 3 -screen 0 "${1}x24" -nolisten tcp 3>"$fifo" >/dev/null 2>&1 &
  PIDS+=($!)
  read -r XDISPLAY <"$fifo"
  rm -f "$fifo"
  XDISPLAY=":$XDISPLAY"
}
start_xvfb 1366x768
LAPTOP=$XDISPLAY
start_xvfb 1920x1080
DESKTOP=$XDISPLAY
shoot() {  # display, window size, theme, panels…
  DISPLAY=$1 QT_QPA_PLATFORM=xcb python scripts/screenshots.py --size "$2" --theme "$3" "${@:4}"
}
for theme in light dark; do
  shoot "$LAPTOP" 1366x768 "$theme"
  shoot "$DESKTOP" 960x1000 "$theme" chat advisor
  shoot "$DESKTOP" 1920x1080 "$theme" chat advisor
done
