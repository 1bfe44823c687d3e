#!/usr/bin/env bash
# Rebuild seed-data/{communes,postcodes,postcodes_arrondissements,departements}.csv from the
# pinned @etalab/decoupage-administratif (see ../README.md, "Yearly refresh").
# Usage: refresh/refresh.sh [--out DIR] [--previous FILE] [--centroids FILE]
# Relative paths are taken from the current directory. Without --out the CSVs in seed-data/ are
# rewritten in place; review with `git diff --stat`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v node >/dev/null || { echo "refresh.sh: node (>= 18) is required" >&2; exit 1; }
npm install --prefix "$here" --no-audit --no-fund --no-package-lock --loglevel=error >&2
exec node "$here/refresh.mjs" "$@"
