#!/usr/bin/env bash
# Fresh machine → the whole test suite against a real PostGIS that the project starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
GRIDMAP_BROWSER=1 scripts/setup.sh  # the map's test runs in headless Chromium
.venv/bin/gridmap db up
.venv/bin/ruff check gridmap api tiles tests migrations
exec .venv/bin/python -m pytest "$@"
