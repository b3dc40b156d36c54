#!/usr/bin/env bash
# Run every scripts/bench_*.py (one after another, so they do not compete for the machine) and collect their
# output in results/benchmarks.txt (written to a temporary file first, then renamed: a run that is
# interrupted leaves the previous results in place). Used by `make bench`.
#
#   scripts/bench_all.sh                 # every benchmark
#   scripts/bench_all.sh engine ablate   # only bench_engine.py and bench_ablate.py
#   BENCH_PYTHON=python3 OUT=/tmp/b.txt scripts/bench_all.sh
#
# Exit status: 0 when every benchmark ran, 1 when any failed (the others still run; see the file).
set -u -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -z "${BENCH_PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then BENCH_PYTHON=.venv/bin/python; else BENCH_PYTHON=python3; fi
fi
out="${OUT:-results/benchmarks.txt}"
mkdir -p "$(dirname "$out")"
tmp="$(mktemp "${out}.XXXXXX.tmp")"
trap 'rm -f "$tmp"' EXIT

if [[ $# -gt 0 ]]; then
    scripts=()
    for name in "$@"; do scripts+=("scripts/bench_${name#bench_}"); scripts[-1]="${scripts[-1]%.py}.py"; done
else
    shopt -s nullglob
    scripts=(scripts/bench_*.py)
fi
if [[ ${#scripts[@]} -eq 0 ]]; then
    echo "no scripts/bench_*.py to run" >&2
    exit 1
fi

{
    echo "# neuronimp benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname)"
    "$BENCH_PYTHON" - <<'PY' 2>/dev/null || true
import platform, torch
from neuronimp.runner.io import git_commit
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"# commit {git_commit()}, python {platform.python_version()}, torch {torch.__version__}, "
      f"threads {torch.get_num_threads()}, gpu {gpu}")
PY
} | tee "$tmp"

failed=()
for script in "${scripts[@]}"; do
    if [[ ! -f "$script" ]]; then
        echo "missing: $script" | tee -a "$tmp" >&2
        failed+=("$script")
        continue
    fi
    printf '\n## %s\n' "$script" | tee -a "$tmp"
    start=$(date +%s)
    if "$BENCH_PYTHON" "$script" 2>&1 | tee -a "$tmp"; then
        status="ok"
    else
        status="FAILED (exit ${PIPESTATUS[0]})"
        failed+=("$script")
    fi
    echo "## $script: $status in $(( $(date +%s) - start )) s" | tee -a "$tmp"
done

chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo
echo "wrote $out"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
