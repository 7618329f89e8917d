#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/test_browser.py), from Debian's
# packages: playwright-python drives it through executable_path=/usr/bin/chromium
# (never `playwright install`, which downloads a browser build). Also a CJK font,
# so screenshots of Chinese answers are legible. Idempotent: installs only what
# is missing; apt-get update runs at most once, and only when needed.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
fonts="$(fc-list 2>/dev/null || true)"
if ! grep -qiE 'wenquanyi|noto sans cjk|noto serif cjk' <<<"$fonts"; then
    need+=(fonts-wqy-zenhei)
fi

if [ ${#need[@]} -eq 0 ]; then
    echo "install-browser: chromium and a CJK font already present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-browser: need root or sudo to apt-get install ${need[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-browser: installing ${need[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ -x /usr/bin/chromium ] || { echo "install-browser: /usr/bin/chromium still missing" >&2; exit 1; }
echo "install-browser: done ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
