#!/usr/bin/env bash
# Prepare the machine, then run the whole suite on the system engine, and the end-to-end tests marked
# `matrix` once more on each other engine of the test matrix (scripts/engines.sh: Docker 26.1 with
# overlay2, Docker 26.1 with the containerd image store, Podman). Extra arguments go to every pytest run.
#
#   SLIMTRACE_TEST_ENGINES="docker26 podman" bash scripts/test.sh   # only these extra engines ("" for none)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/engines.sh up

results=$(mktemp -d "${TMPDIR:-/tmp}/slimtrace-test-results.XXXXXX")
trap 'rm -rf "$results"' EXIT
wanted=" ${SLIMTRACE_TEST_ENGINES-docker26 docker26-c8d podman} "

status=0
echo "==> the whole suite on the system engine (docker20)"
python3 -m pytest -q tests --junitxml="$results/docker20.xml" "$@" || status=$?
# pytest exits 5 when it collected no tests; the exit stays non-zero, so CI fails, and says why.
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that counts as a failure" >&2
fi

while read -r name host; do
    [[ "$name" != docker20 && "$wanted" == *" $name "* ]] || continue
    echo "==> the end-to-end matrix on $name ($host)"
    engine_status=0
    DOCKER_HOST="$host" python3 -m pytest -q -m matrix tests --junitxml="$results/$name.xml" "$@" || engine_status=$?
    # Extra arguments (-k ...) may leave no matrix test to run on an engine: that is no failure.
    if [ "$engine_status" -ne 0 ] && [ "$engine_status" -ne 5 ]; then
        status=$engine_status
    fi
done < <(bash scripts/engines.sh hosts)

python3 scripts/test_totals.py "$results"/*.xml
exit "$status"
