#!/usr/bin/env bash
# Backend-specific code stays in src/kernels/: outside their tests, the generic layers (nn, model, loss,
# train) never name burn-flex or burn-cubecl, their backend types or the downcast that reaches them. Prints offenders.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for file in $(find src/nn src/model src/loss src/train -name '*.rs' | sort); do
  # Only the code before the file's test module counts.
  hits=$(awk '/^#\[cfg\(test\)\]/ { exit } { print FILENAME ":" FNR ": " $0 }' "$file" |
    grep -E 'burn_flex|burn_cubecl|\bCubeTensor\b|\bCpu\b|\bCpuAutodiff\b|\bretype\b' | grep -vE ':[0-9]+: *//')
  if [ -n "$hits" ]; then
    echo "$hits"
    status=1
  fi
done
[ $status -eq 0 ] && echo "kernels: no backend-specific code outside src/kernels/ (tests aside)"
exit $status
