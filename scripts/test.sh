#!/usr/bin/env bash
# Run every check the project has: ruff (lint and format), the import contracts (lint-imports), mypy,
# then the test suite (extra arguments go to pytest).
# Creates .venv and installs the project with its test extras on the first run.
# Edge tests need Dovecot, PostgreSQL and Redis: run `sudo scripts/install-test-deps.sh` once;
# without them those tests are skipped (and fail in CI, where CI=true).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "test.sh: Python 3.11 or newer is required as python3" >&2; exit 1; }
    echo "test.sh: creating .venv and installing .[test]" >&2
    python3 -m venv .venv || exit 1
    .venv/bin/python -m pip install --quiet --upgrade pip || exit 1
    .venv/bin/python -m pip install --quiet -e '.[test]' || exit 1
fi

failed=()
# run NAME COMMAND...: run every check even after one fails; remember which failed.
run() {
    local name=$1; shift
    echo "==> $*" >&2
    "$@" || failed+=("$name")
}

run ruff .venv/bin/ruff check .
run ruff-format .venv/bin/ruff format --check .
run lint-imports .venv/bin/lint-imports
run mypy .venv/bin/mypy
run pytest .venv/bin/python -m pytest -q "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all checks passed" >&2
