#!/usr/bin/env bash
# Time a fresh-clone `make synth` of each given revision, one after the other on this machine,
# and count the Python packages its virtualenv then holds (pip list, pip itself included).
# Usage: tools/measure_fresh_synth.sh [REVISION...]   (default: HEAD; committed work only)
# Downloads come from pip's and npm's caches when warm, as on a developer's machine. Wall time
# depends on what else runs: the CPU time (user + system, all processes) and the load average
# are printed beside it.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %9s %8s %9s\n' revision "wall (s)" "CPU (s)" packages
for revision in "${@:-HEAD}"; do
  commit=$(git -C "$repo" rev-parse --verify "$revision^{commit}")
  clone="$work/${commit:0:12}"
  git clone --quiet --no-checkout "$repo" "$clone"
  git -C "$clone" checkout --quiet --detach "$commit"
  TIMEFORMAT='%R %U %S'
  if ! { time make -C "$clone" synth >"$clone.log" 2>&1; } 2>"$clone.time"; then
    tail -20 "$clone.log" >&2
    echo "make synth failed at $revision" >&2
    exit 1
  fi
  read -r wall user system <"$clone.time"
  packages=$("$clone/.venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)
  cpu=$(awk -v u="$user" -v s="$system" 'BEGIN { printf "%.1f", u + s }')
  printf '%-12s %9.1f %8s %9d\n' "${commit:0:12}" "$wall" "$cpu" "$packages"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
