#!/usr/bin/env bash
# Time a fresh-clone `make synth` of each given revision, one after the other on this machine,
# and count the Python packages its virtualenv then holds (pip list, pip itself included).
# Usage: tools/measure_fresh_synth.sh [REVISION...]   (default: HEAD; committed work only)
# Package downloads come from pip's and npm's caches when warm, as on a developer's machine.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-12s %10s %9s\n' revision "synth (s)" packages
for revision in "${@:-HEAD}"; do
  commit=$(git -C "$repo" rev-parse --verify "$revision^{commit}")
  clone="$work/${commit:0:12}"
  git clone --quiet --no-checkout "$repo" "$clone"
  git -C "$clone" checkout --quiet --detach "$commit"
  start=$(date +%s%N)
  if ! make -C "$clone" synth >"$clone.log" 2>&1; then
    tail -20 "$clone.log" >&2
    echo "make synth failed at $revision" >&2
    exit 1
  fi
  tenths=$(( ($(date +%s%N) - start) / 100000000 ))
  packages=$("$clone/.venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)
  printf '%-12s %8d.%d %9d\n' "${commit:0:12}" $((tenths / 10)) $((tenths % 10)) "$packages"
done
