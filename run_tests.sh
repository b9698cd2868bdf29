#!/usr/bin/env bash
# Sets up venv/ (requirements + test requirements), Debian's Chromium for the browser tests,
# then runs the whole test suite. Extra arguments go to pytest.
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
exec venv/bin/python -m pytest tests -q "$@"
