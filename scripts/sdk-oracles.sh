#!/usr/bin/env bash
# Installs the independent Alipay implementations the differential tests compare the gateway
# with (tests/it/differential.rs): python-alipay-sdk (PyPI, pinned, in .venv-oracles) and
# Alipay's official Node.js SDK (npm alipay-sdk, pinned by tests/sdk-oracles/package-lock.json).
# Re-installs only when a pin changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/venv.sh "$root/.venv-oracles" "$root/scripts/python/sdk-oracles-requirements.txt"
command -v node > /dev/null || { echo "sdk-oracles: node (Node.js >= 18) is needed for alipay-sdk" >&2; exit 1; }
oracles="$root/tests/sdk-oracles"
stamp="$oracles/node_modules/.package-lock.sha256"
want=$(sha256sum "$oracles/package-lock.json" | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "==> installing alipay-sdk into tests/sdk-oracles/node_modules (npm ci, once)" >&2
  (cd "$oracles" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
# Ant International's Python SDK for the Antom differential tests, in a venv of its own.
scripts/venv.sh "$root/.venv-antom-oracle" "$root/scripts/python/antom-oracle-requirements.txt"
