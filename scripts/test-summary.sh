#!/usr/bin/env bash
# Prints one closing line for the whole suite from cargo test's output: "tests: N passed, N failed".
set -euo pipefail
log=${1:-.local/test-output.log}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0) }' "$log"
