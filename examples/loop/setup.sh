#!/usr/bin/env bash
# Creates the sandbox git repository the example loop works in.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rm -rf "$here/sandbox" "$here/runs"
mkdir -p "$here/sandbox"
cd "$here/sandbox"
git init -q -b main
git config user.name "Example Loop"
git config user.email "loop@example.invalid"
echo "sandbox for the example loop" > README.md
git add README.md
git commit -q -m "initial"
echo "sandbox ready; now run (from the repository root):"
echo "  LOOP_EXAMPLE_DIR=$here runledger loop -c examples/loop/loop.yaml --db sqlite:///./examples/loop/runs/loop.db"
