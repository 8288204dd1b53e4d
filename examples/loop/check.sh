#!/usr/bin/env bash
# The project's checks. `check.sh work`: every work file is non-empty (the gate).
# `check.sh full`: also a CHANGES.txt entry (session_end; the fixer adds it).
set -euo pipefail
for f in work-*.txt; do test -s "$f" || { echo "empty: $f"; exit 1; }; done
if [ "${1:-work}" = full ]; then
  test -f CHANGES.txt || { echo "CHANGES.txt is missing"; exit 1; }
fi
echo "checks passed"
