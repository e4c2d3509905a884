#!/usr/bin/env bash
# A walk through the commands people use on a real incident of the reference scenario
# (runbooks/retail-breach.yaml), with the example configuration (examples/phasegate.yaml) on the
# embedded SQLite store: open the incident, read the status board, record the first manual step
# (someone without the step's role is refused first), try the CISO's approval before its phase
# waits for it, add a note, try a close and a public update without the right to (both refused,
# naming the role that may); then verify the incident's tamper-evident log, export it, verify the
# export offline, and write the report.
#
# Everything it writes stays in walkthrough-out/ at the repository's root (git-ignored), emptied
# at the start of each run: the configuration, the database, the signing key, the witness file,
# the export and the report. The last lines say where they are.
#
# The runbook's automated steps call the retailer's own systems (`*.internal.example`), which do
# not exist here, so this walk does not call `phasegate run`. The README's main command,
# `phasegate drill drills/retail-breach.yaml`, takes the whole runbook start to close against
# stand-ins for those systems.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
printf '\033[1mwalkthrough:\033[0m cargo build --release (the first build compiles about 240 crates: many minutes on a small machine)\n'
cargo build --release --manifest-path "$root/Cargo.toml"
pg="$root/target/release/phasegate"
out="$root/walkthrough-out"
rm -rf "$out"
mkdir -p "$out"
cd "$out"
# The example configuration as a user copies it; its relative paths resolve against its own
# directory, so only the runbooks' place changes.
cp "$root/examples/phasegate.yaml" phasegate.yaml
sed -i "s|^runbooks: .*|runbooks: $root/runbooks|; s|^templates: .*|templates: $root/templates|" phasegate.yaml
export PHASEGATE_CONFIG="$out/phasegate.yaml"

# step COMMAND...: shows the command, runs it, and goes on whether it was recorded or refused.
step() {
    printf '\n\033[1m$ phasegate %s\033[0m\n' "$*"
    local status=0
    "$pg" "$@" || status=$?
    [ "$status" = 0 ] || printf '\033[2m(exit status %s)\033[0m\n' "$status"
}

# The key that signs the log's checkpoints, where the example configuration names it; each
# checkpoint is also copied to the witness file it names (phasegate-witness.jsonl).
step keygen keys/phasegate.pem
step validate "$root/runbooks"
step plan "$root/runbooks/retail-breach.yaml"
printf '\n\033[1m$ phasegate start retail-breach --as dana.ito --input severity=critical\033[0m\n'
incident="$("$pg" start retail-breach --as dana.ito --input severity=critical)"
echo "$incident"
step status "$incident"
step done "$incident" triage/mobilise --as tom.reyes --evidence "bridge open"
step done "$incident" triage/mobilise --as dana.ito --evidence "Bridge #inc-retail-breach open, roles assigned"
step approve "$incident" relax-controls --as sam.okafor --note "tills must trade"
step note "$incident" "EDR shows lateral movement from the shop web tier" --as dana.ito
step close "$incident" --as tom.reyes
step update "$incident" public --as chris.doyle
step status "$incident"
step list
step audit verify "$incident" --witness "$out/phasegate-witness.jsonl"
step audit export "$incident" -o "$out/$incident.jsonl"
step audit verify --file "$out/$incident.jsonl" --public-key "$out/keys/phasegate.pem.pub" --witness "$out/phasegate-witness.jsonl"
step report "$incident" --format html -o "$out/report.html"
step report "$incident" -o "$out/report.md"
printf '\n\033[1m$ head -n 30 %s\033[0m\n' "$out/report.md"
head -n 30 "$out/report.md"

printf '\n\033[1mwalkthrough:\033[0m done; everything it wrote is in %s:\n' "$out"
printf '  %-14s %s\n' \
    "report" "$out/report.html (open it in a browser) and $out/report.md" \
    "export" "$out/$incident.jsonl (verify it: phasegate audit verify --file ... --public-key $out/keys/phasegate.pem.pub)" \
    "witness" "$out/phasegate-witness.jsonl (a copy of every checkpoint: audit verify --witness ...)" \
    "database" "$out/phasegate.db (PHASEGATE_CONFIG=$out/phasegate.yaml $pg status $incident)"
