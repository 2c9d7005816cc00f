#!/usr/bin/env bash
# Runs pytest and refuses to pass when no test ran (pytest exit code 5).
set -uo pipefail
python -m pytest -ra --durations=15 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
