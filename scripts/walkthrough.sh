#!/usr/bin/env bash
# A short walk through the reference scenario (runbooks/retail-breach.yaml) on the embedded
# SQLite store, in a fresh directory: open the incident, read the status board, record the first
# manual step, try approvals the way a CISO's team would, and add a note.
#
# The runbook's automated steps call the retailer's own systems (`*.internal.example`), which do
# not exist here, so this walk stops before `phasegate run` would need them; tests/it/incident.rs
# drives the whole runbook, start to close, against local stand-ins for those systems.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pg="$root/target/release/phasegate"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root/examples/phasegate.yaml" "$work/phasegate.yaml"
sed -i "s|^database: .*|database: $work/phasegate.db|; s|^runbooks: .*|runbooks: $root/runbooks|" "$work/phasegate.yaml"
export PHASEGATE_CONFIG="$work/phasegate.yaml" PHASEGATE_TEMPLATES="$root/templates"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@" || true; }

"$pg" validate "$root/runbooks"
step "$pg" plan "$root/runbooks/retail-breach.yaml"
printf '\n\033[1m$ phasegate start retail-breach --as dana.ito --input severity=critical\033[0m\n'
incident="$("$pg" start retail-breach --as dana.ito --input severity=critical)"
echo "$incident"
step "$pg" status "$incident"
step "$pg" done "$incident" triage/mobilise --as tom.reyes --evidence "bridge open"
step "$pg" done "$incident" triage/mobilise --as dana.ito --evidence "Bridge #inc-retail-breach open, roles assigned"
step "$pg" approve "$incident" relax-controls --as sam.okafor --note "tills must trade"
step "$pg" note "$incident" "EDR shows lateral movement from the shop web tier" --as dana.ito
step "$pg" status "$incident"
step "$pg" list
