#!/usr/bin/env bash
# Ensures a project-local Python virtualenv holds exactly a pinned requirements file.
# Usage: scripts/venv.sh DIR REQUIREMENTS_FILE   (re-installs only when the file changes)
set -euo pipefail
dir=$1
requirements=$2
stamp="$dir/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "==> installing $(basename "$requirements") into $dir (once)" >&2
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
echo "$want" > "$stamp"
