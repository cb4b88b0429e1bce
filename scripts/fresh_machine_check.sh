#!/usr/bin/env bash
# The first-run experience on a fresh machine, checked by hand (not in CI: it installs torch and trains twice).
#
# In a copy of this working tree with no virtual environment, it runs the README's install command word
# for word (the first ```bash block; its final `.venv/bin/arsl` would open the interactive console, so the
# demo pipeline runs in its place), then `arsl pipeline run --demo --yes` on an empty $ARSL_HOME, to the
# end. Exit status: the pipeline's (0 only when a new version was promoted). Wall times are printed.
#
# Usage: scripts/fresh_machine_check.sh [WORKDIR]   (default: a new temporary folder, kept for inspection)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$(mktemp -d -t arsl-fresh-XXXXXX)}"
mkdir -p "$work"
if [ -n "$(ls -A "$work")" ]; then
    echo "fresh_machine_check: $work is not empty; give an empty or new folder" >&2
    exit 2
fi
checkout="$work/arsl"
home="$work/home"
mkdir -p "$checkout" "$home"

# The tracked files as they are now (a clone would miss uncommitted work); never the developer's .venv.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$checkout/" 2>/dev/null || true)
test -f "$checkout/pyproject.toml" || { echo "fresh_machine_check: copying $repo failed" >&2; exit 2; }

install_line="$(awk '/^```bash$/ {inside=1; next} /^```$/ {if (inside) exit} inside {print; exit}' "$repo/README.md")"
case "$install_line" in
    *"pip install"*) ;;
    *) echo "fresh_machine_check: the README's first bash block is not an install command: $install_line" >&2; exit 2 ;;
esac
install_command="${install_line% && .venv/bin/arsl}"
echo "README install command: $install_command"

cd "$checkout"
unset ARSL_CONFIG VIRTUAL_ENV
for name in $(env | sed -n 's/^\(ARSL_[A-Z0-9_]*\)=.*/\1/p'); do unset "$name"; done
export ARSL_HOME="$home"

start=$(date +%s)
bash -c "$install_command"
installed=$(date +%s)
echo "install: $((installed - start)) s"

status=0
.venv/bin/arsl pipeline run --demo --yes || status=$?
finished=$(date +%s)
echo "pipeline run --demo: $((finished - installed)) s, exit $status"
.venv/bin/arsl status || true
.venv/bin/arsl service stop || true
echo "kept for inspection: $work"
exit "$status"
