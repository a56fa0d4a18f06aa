#!/usr/bin/env bash
# Prepare the machine, then run the whole suite. Extra arguments go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

status=0
python3 -m pytest -q tests "$@" || status=$?
# pytest exits 5 when it collected no tests; the exit stays non-zero, so CI fails, and says why.
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that counts as a failure" >&2
fi
exit "$status"
