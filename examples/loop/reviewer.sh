#!/usr/bin/env bash
# A reviewer that approves with one low-priority note, citing the reviewed range.
set -euo pipefail
lines=$(wc -l < "$DIFF_FILE")
printf '{"verdict": "approve", "findings": [{"file": null, "line_start": null, "line_end": null, "priority": 3, "title": "diff of %s lines reviewed", "body": "range %s"}]}\n' "$lines" "$REVIEW_RANGE"
