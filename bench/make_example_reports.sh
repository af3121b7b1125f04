#!/usr/bin/env bash
# Regenerate reports/examples/: one run folder per built-in example, C++ floor included.
# Run from the repository root on a quiet machine:  bash bench/make_example_reports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for example in tiny mnist-softmax mnist-cnn lstm; do
  rm -rf "reports/examples/$example"
  kdiag inspect --example "$example" --cpp --out "reports/examples/$example" --format markdown > /dev/null
  echo "reports/examples/$example/report.md"
done
