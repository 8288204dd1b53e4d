#!/usr/bin/env bash
# The project's checks. `check.sh work`: every work file is non-empty (the gate).
# `check.sh full`: also a CHANGES.txt entry for the issue (session_end; the fixer adds it).
set -euo pipefail
for f in work-*.txt; do test -s "$f" || { echo "empty: $f"; exit 1; }; done
if [ "${1:-work}" = full ]; then
  grep -qx -- "- $ISSUE_ID" CHANGES.txt 2>/dev/null || { echo "CHANGES.txt is missing an entry for $ISSUE_ID"; exit 1; }
fi
echo "checks passed"
