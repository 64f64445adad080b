#!/usr/bin/env bash
# Fetch the dashboard's charting library, uPlot, at a pinned version from the npm registry and
# copy its browser build and licence into the package (src/shipyard/serving/dashboard/static/),
# where they are committed: the server serves every dashboard file itself, so neither it nor the
# browser needs the network. Checks the tarball against the registry's recorded integrity (and
# the pinned one below), so a rebuild is reproducible. Needs node/npm.
#   bash scripts/build_dashboard.sh            # fetch and copy
#   bash scripts/build_dashboard.sh --check    # fail if the committed files differ
set -euo pipefail
UPLOT_VERSION=1.6.32
UPLOT_INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATIC="$ROOT/src/shipyard/serving/dashboard/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null
tarball="uplot-$UPLOT_VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$UPLOT_INTEGRITY" ]; then
  echo "build_dashboard: $tarball has integrity $got, expected $UPLOT_INTEGRITY" >&2
  exit 1
fi
tar xzf "$tarball"
declare -A files=(
  [package/dist/uPlot.iife.min.js]=uPlot.iife.min.js
  [package/dist/uPlot.min.css]=uPlot.min.css
  [package/LICENSE]=uPlot.LICENSE
)
status=0
for src in "${!files[@]}"; do
  dest="$STATIC/${files[$src]}"
  if [ "${1:-}" = "--check" ]; then
    cmp -s "$src" "$dest" || { echo "build_dashboard: $dest differs from uPlot $UPLOT_VERSION" >&2; status=1; }
  else
    cp "$src" "$dest"
  fi
done
[ "${1:-}" = "--check" ] && [ $status -eq 0 ] && echo "build_dashboard: committed uPlot $UPLOT_VERSION files match"
exit $status
