#!/usr/bin/env bash
# A short walk through the reference scenario (runbooks/retail-breach.yaml) on the embedded
# SQLite store, in a fresh directory: open the incident, read the status board, record the first
# manual step, try approvals the way a CISO's team would, and add a note; then verify the
# incident's tamper-evident log, export it, verify the export offline, and write the report.
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
# A key that signs the log's checkpoints, named in the configuration.
"$pg" keygen "$work/audit.pem" > /dev/null
printf 'audit:\n  signing_key: %s\n' "$work/audit.pem" >> "$work/phasegate.yaml"

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
step "$pg" audit verify "$incident"
step "$pg" audit export "$incident" -o "$work/$incident.jsonl"
step "$pg" audit verify --file "$work/$incident.jsonl" --public-key "$work/audit.pem.pub"
step "$pg" report "$incident" --format html -o "$work/report.html"
printf '\n\033[1m$ phasegate report %s | head -n 30\033[0m\n' "$incident"
"$pg" report "$incident" | head -n 30
