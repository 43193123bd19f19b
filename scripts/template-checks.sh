#!/usr/bin/env bash
# The template checks in `make test`: cfn-lint, `sam validate --lint`, and `sam build` without
# Docker. All offline, no AWS credentials.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/venv.sh" "$root/.venv-sam" "$root/scripts/python/sam-requirements.txt"
"$root/scripts/venv.sh" "$root/.venv-tools" "$root/scripts/python/tools-requirements.txt"
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
# No telemetry or other calls home: only loopback is allowed here.
export SAM_CLI_TELEMETRY=0
unset AWS_PROFILE AWS_SESSION_TOKEN

echo "==> cfn-lint template.yaml"
"$root/.venv-sam/bin/cfn-lint" template.yaml
echo "==> sam validate --lint"
"$root/.venv-sam/bin/sam" validate --lint --template template.yaml

# The template builds arm64 (Graviton) binaries. This machine has only the x86_64 Rust target,
# so the build check builds an x86_64 copy of the template with plain cargo. On a machine with
# `rustup target add aarch64-unknown-linux-gnu` and cargo-lambda's Zig cross-linker
# (`pip install cargo-lambda`, with its dependencies), `sam build` builds template.yaml as it is.
echo "==> sam build (x86_64 copy, CARGO_LAMBDA_COMPILER=cargo)"
copy="$root/template.x86_64.yaml"
trap 'rm -f "$copy"' EXIT
sed 's/Architectures: \[arm64\]/Architectures: [x86_64]/' template.yaml > "$copy"
PATH="$root/.venv-tools/bin:$PATH" CARGO_LAMBDA_COMPILER=cargo \
  "$root/.venv-sam/bin/sam" build --template "$copy" --build-dir .aws-sam/build-x86_64 --beta-features
for function in CreatePaymentFunction RefundFunction SubscriptionsFunction NotifyFunction SweeperFunction ReconcileFunction PublisherFunction; do
  test -x ".aws-sam/build-x86_64/$function/bootstrap" || { echo "no bootstrap for $function" >&2; exit 1; }
done
# The deployed binaries cannot run on a moved clock: each release bootstrap sam built refuses
# to start when TEST_CLOCK_FILE is set (shared/gateway/src/clock.rs), before it reads anything.
echo "==> release binaries refuse the test clock"
for function in CreatePaymentFunction RefundFunction SubscriptionsFunction NotifyFunction SweeperFunction ReconcileFunction PublisherFunction; do
  set +e
  said=$(TEST_CLOCK_FILE=/nonexistent/test-clock timeout 20 ".aws-sam/build-x86_64/$function/bootstrap" 2>&1 </dev/null)
  rc=$?
  set -e
  if [[ $rc -ne 78 || $said != *"release build: its clock cannot be moved"* ]]; then
    echo "$function started with TEST_CLOCK_FILE set (exit $rc): $said" >&2
    exit 1
  fi
done
echo "==> template checks passed"
