#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian machine with Python: installs cnncalc with its test
# extra (pytest, hypothesis, Keras + jax), and LibreOffice from Debian's packages when it is missing.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k verify`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! command -v soffice >/dev/null 2>&1 && ! command -v libreoffice >/dev/null 2>&1; then
  echo "tests/run.sh: installing LibreOffice (Debian package libreoffice-calc-nogui)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends libreoffice-calc-nogui
fi

export KERAS_BACKEND=jax
# In this run nothing may be skipped for want of Keras or LibreOffice: a missing install step fails.
export CNNCALC_REQUIRE_ALL=1

# Two workers (CI has two cores; CNNCALC_WORKERS=0 runs in one process), a test file to a worker, so a file's
# fixtures are made once and the fuzz counts are printed by the worker that ran them.
set +e
python3 -m pytest -n "${CNNCALC_WORKERS:-2}" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$status"
