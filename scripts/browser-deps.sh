#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser test (the only browser this machine can
# run: test tools cannot download their own), and a Chinese font for its screenshots. Installs
# them once; later runs find them.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver && -d /usr/share/fonts/truetype/wqy ]]; then
  exit 0
fi
echo "==> installing Debian's chromium, chromium-driver and fonts-wqy-zenhei for the browser test (once)" >&2
sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || true
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-wqy-zenhei >/dev/null
/usr/bin/chromium --version >&2
