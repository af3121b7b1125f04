#!/usr/bin/env bash
# Screenshots of report.html files in headless Chromium, to look at a change to the HTML report.
#
#   bash bench/screenshots.sh OUT_DIR REPORT.html [REPORT.html ...]
#   bash bench/screenshots.sh OUT_DIR --examples [BUDGET]   # runs kdiag on the four built-in examples first
#
# Each REPORT.html gives OUT_DIR/<its folder name>.png (1280 px wide, the whole page up to
# KDIAG_SHOT_HEIGHT px, default 4000). Needs Debian's chromium (apt-get install chromium);
# CI does not run this. The page makes no network request (its Content-Security-Policy
# forbids it) and Chromium is started with everything that phones home turned off.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
out=$1
shift
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "screenshots.sh: chromium not found; install it with: apt-get install -y chromium" >&2
    exit 2
fi

reports=()
if [ "$1" = "--examples" ]; then
    budget=${2:-0.3}
    runs=$(mktemp -d)
    for example in tiny mnist-softmax mnist-cnn lstm; do
        python3 -m kdiag inspect --example "$example" --out "$runs/$example" --budget "$budget" --format json \
            > /dev/null
        reports+=("$runs/$example/report.html")
    done
    echo "screenshots.sh: the runs are in $runs" >&2
else
    reports=("$@")
fi

height=${KDIAG_SHOT_HEIGHT:-4000}
for report in "${reports[@]}"; do
    name=$(basename "$(dirname "$(realpath "$report")")")
    profile=$(mktemp -d)
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$profile" --screenshot="$out/$name.png" \
        --window-size=1280,"$height" "file://$(realpath "$report")" 2>/dev/null
    rm -rf "$profile"
    echo "$out/$name.png"
done
