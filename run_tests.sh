#!/usr/bin/env bash
# Sets up venv/ (requirements + test requirements), Debian's Chromium for the browser tests,
# then runs the whole test suite in two pytest workers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
python3 launch.py --with-tests --exit
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
# two workers: the browser tests in order on one, the other files (each kept together) on the other
exec venv/bin/python -m pytest tests -q -n 2 --dist loadgroup "$@"
