#!/usr/bin/env bash
# Fresh machine → demo running at http://127.0.0.1:8000 (install, PostGIS, migrate, demo city, serve).
# Options: SCALE=small|medium|city SEED=42 PORT=8000 DEMO_PASSWORD=… (one account per role signs in with it)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
gm=.venv/bin/gridmap
$gm db up
$gm migrate
$gm demo --scale "${SCALE:-small}" --seed "${SEED:-42}" --password "${DEMO_PASSWORD:-gridmap-demo-2026}"
exec $gm serve --port "${PORT:-8000}"
