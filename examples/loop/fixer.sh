#!/usr/bin/env bash
# A fixer that reads $FAILURE_FILE and patches what it names.
set -euo pipefail
echo "fixing $TRIGGER failure for $ISSUE_ID (attempt $ATTEMPT):"
cat "$FAILURE_FILE"
if grep -q "CHANGES.txt is missing" "$FAILURE_FILE"; then
  echo "- $ISSUE_ID" >> CHANGES.txt
  git add CHANGES.txt
  git commit -q -m "$ISSUE_ID: add CHANGES entry"
fi
