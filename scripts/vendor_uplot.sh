#!/bin/sh
# Copies uPlot (the dashboard's chart library) from the npm registry into the Python package,
# so the dashboard works without internet access and needs no JavaScript build step.
# Run by `make vendor`; the copied files are committed. Pinned version and integrity:
# npm checks the tarball against the registry's sha512 and this script against ours.
#   UPLOT_VERSION=1.6.33 UPLOT_INTEGRITY=sha512-... scripts/vendor_uplot.sh   (to upgrade)
set -eu
VERSION="${UPLOT_VERSION:-1.6.32}"
INTEGRITY="${UPLOT_INTEGRITY:-sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==}"
DEST="$(cd "$(dirname "$0")/.." && pwd)/millstream/dashboard/static/vendor/uplot"
command -v npm >/dev/null || { echo "vendor_uplot: npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack "uplot@$VERSION" --json --silent > pack.json)
GOT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["integrity"])' "$TMP/pack.json")"
if [ "$GOT" != "$INTEGRITY" ]; then
  echo "vendor_uplot: uplot@$VERSION has integrity $GOT, expected $INTEGRITY; check the" \
       "release and set UPLOT_INTEGRITY to upgrade on purpose" >&2
  exit 1
fi
tar -xzf "$TMP/uplot-$VERSION.tgz" -C "$TMP"
mkdir -p "$DEST"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" \
   "$TMP/package/LICENSE" "$DEST/"
printf 'uplot %s (MIT, https://github.com/leeoniya/uPlot)\nnpm integrity %s\n' \
  "$VERSION" "$INTEGRITY" > "$DEST/VERSION"
echo "vendor_uplot: uplot $VERSION copied to $DEST"
