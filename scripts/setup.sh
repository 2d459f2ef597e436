#!/usr/bin/env bash
# Install what gridmap needs on Debian/Ubuntu: system packages (PostgreSQL + PostGIS, Python venv,
# npm for the map's Leaflet files; Chromium for the browser test when GRIDMAP_BROWSER=1) when
# missing, then a virtualenv in .venv with gridmap and its dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(npm)  # fetches Leaflet once for the offline map (gridmap.maps)
if [ "${GRIDMAP_BROWSER:-}" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk" || need+=(fonts-wqy-zenhei)  # Chinese labels in the screenshot
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
pg_ver=${pg_bin#/usr/lib/postgresql/}; pg_ver=${pg_ver%/bin}
if [ -z "${GRIDMAP_DATABASE_URL:-}" ]; then
  [ -n "$pg_bin" ] || need+=(postgresql)
  if [ -n "$pg_ver" ] && [ ! -f "/usr/share/postgresql/$pg_ver/extension/postgis.control" ]; then
    need+=("postgresql-$pg_ver-postgis-3")
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "gridmap needs these system packages: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need[*]}   (then run this again)" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" postgresql "* ]]; then  # PostGIS for the version just installed
    pg_ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    [ -f "/usr/share/postgresql/$pg_ver/extension/postgis.control" ] || \
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-$pg_ver-postgis-3" >/dev/null
  fi
  # the distribution's own cluster is not needed: gridmap runs its own
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
.venv/bin/python -c "from gridmap.maps import ensure_assets; ensure_assets()"  # Leaflet for the map, once
echo "gridmap installed in .venv"
