#!/usr/bin/env bash
# Rehearse the Huawei backend on this machine: the whole pipeline against loopback stand-ins, no cloud account.
#
# Starts the stand-ins (`python -m tests.huawei_rehearsal`: OBS, ModelArts training that runs the bundled
# trainer, AI application import, real-time services that serve through the package's customize_service.py,
# Cloud Eye, API Gateway app authentication; all on 127.0.0.1 with fixed test credentials), then runs
# `arsl pipeline run --demo --yes --backend huawei` with their config and environment in a fresh $ARSL_HOME,
# prints the outcome and `arsl canary status --backend huawei`, and stops the stand-ins (by PID) on the way out.
#
# Usage: scripts/rehearse_huawei.sh [--broken-challenger] [--tiny] [--keep]
#   --broken-challenger  release a challenger with random weights: it must be rolled back (exit 1)
#   --tiny               the reduced rehearsal: outputs synced every second, canary windows of 10 s
#                        (the training, the data and the gate stay the demo's: the gate is the real one)
#   --keep               keep the work folder (stand-ins' objects, jobs and logs, the home) for inspection
# Exit status: the pipeline's (0 a new version was promoted; 1 it was not: rolled back, gate failed, failed);
# 2 usage or the stand-ins did not start. Python: $REHEARSAL_PYTHON, else the README's .venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${REHEARSAL_PYTHON:-$repo/.venv/bin/python}"
broken=()
tiny=0
keep=0
for argument in "$@"; do
    case "$argument" in
        --broken-challenger) broken=(--broken-challenger) ;;
        --tiny) tiny=1 ;;
        --keep) keep=1 ;;
        -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "rehearse_huawei: unknown argument $argument (see --help)" >&2; exit 2 ;;
    esac
done
if [ ! -x "$python" ]; then
    echo "rehearse_huawei: no Python at $python: install the README's venv (.venv) or set REHEARSAL_PYTHON" >&2
    exit 2
fi

work="$(mktemp -d -t arsl-rehearsal-XXXXXX)"
port_file="$work/ports.json"
standins=""
stop_standins() {
    if [ -n "$standins" ] && kill -0 "$standins" 2>/dev/null; then
        kill -TERM "$standins"  # the launcher stops its job and serving processes itself
        wait "$standins" || true
    fi
    if [ "$keep" = 1 ]; then
        echo "kept for inspection: $work"
    else
        rm -rf "$work"
    fi
}
trap stop_standins EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Nothing of the caller's arsl configuration may leak in: the stand-ins' config and a fresh home only.
unset ARSL_CONFIG VIRTUAL_ENV
for name in $(env | sed -n 's/^\(ARSL_[A-Z0-9_]*\)=.*/\1/p'); do unset "$name"; done

sync_s=30
[ "$tiny" = 1 ] && sync_s=1
cd "$repo"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m tests.huawei_rehearsal \
    --port-file "$port_file" --workdir "$work/stack" --output-sync-s "$sync_s" \
    >"$work/standins.out" 2>"$work/standins.log" &
standins=$!

# The launcher prints `ready F` once everything listens (the port file is written last, atomically).
deadline=$((SECONDS + 120))
until grep -q '^ready ' "$work/standins.out" 2>/dev/null; do
    if ! kill -0 "$standins" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "rehearse_huawei: the stand-ins did not start; their log:" >&2
        cat "$work/standins.log" >&2
        exit 2
    fi
    sleep 0.2
done
echo "stand-ins ready (pid $standins): $(cat "$work/standins.out")"

# The environment an arsl process needs: the fixed test credentials, ARSL_CONFIG, the loopback resolver, the
# app code (the port file's `env`).
eval "$("$python" -c '
import json, shlex, sys
for name, value in json.load(open(sys.argv[1], encoding="utf-8"))["env"].items():
    print(f"export {name}={shlex.quote(value)}")
' "$port_file")"
export ARSL_HOME="$work/home"
[ "$tiny" = 1 ] && export ARSL_CANARY_WINDOW_S=10

started=$SECONDS
status=0
"$python" -m arsl_tui pipeline run --demo --yes --backend huawei "${broken[@]}" || status=$?
elapsed=$((SECONDS - started))

echo
echo "arsl canary status --backend huawei:"
"$python" -m arsl_tui canary status --backend huawei || true
echo
case "$status" in
    0) echo "REHEARSAL: a new version was promoted on the Huawei stand-ins (pipeline ${elapsed} s, exit 0)" ;;
    1)
        if [ "${#broken[@]}" -gt 0 ]; then
            echo "REHEARSAL: the broken challenger was rolled back; the champion still serves (pipeline ${elapsed} s, exit 1)"
        else
            echo "REHEARSAL: no new version was promoted (pipeline ${elapsed} s, exit 1): see the lines above"
        fi
        ;;
    *) echo "REHEARSAL: the pipeline ended with exit $status after ${elapsed} s" ;;
esac
exit "$status"
