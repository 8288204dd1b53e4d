#!/usr/bin/env bash
# A shell-script implementer: writes one file named after the issue and commits it.
set -euo pipefail
echo "implementing $ISSUE_ID (attempt $ATTEMPT of $MAX_ATTEMPTS) from $ISSUE_FILE"
if [ -n "${FEEDBACK_FILE:-}" ]; then echo "feedback from the last attempt:"; cat "$FEEDBACK_FILE"; fi
echo "work for $ISSUE_ID" > "work-$ISSUE_ID.txt"
git add "work-$ISSUE_ID.txt"
git commit -q -m "$ISSUE_ID: implement"
