#!/usr/bin/env bash
# Runs a command with the local AWS stand-in up and the SDK pointed at it; stops the stand-in
# afterwards if this script started it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
started=no
if ! "$root/scripts/moto.sh" url >/dev/null 2>&1; then
  "$root/scripts/moto.sh" start >/dev/null
  started=yes
fi
cleanup() { if [[ $started == yes ]]; then "$root/scripts/moto.sh" stop; fi; }
trap cleanup EXIT
AWS_ENDPOINT_URL=$("$root/scripts/moto.sh" url)
export AWS_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# Never let a developer's real AWS profile leak into tests.
unset AWS_PROFILE AWS_SESSION_TOKEN
"$@"
