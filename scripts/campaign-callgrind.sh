#!/usr/bin/env bash
# Instructions per message of `phasegate run` on the campaign bench's runbook (issue 14), counted
# by callgrind (load-independent): N recipients (default 20,000) from the bench's member list,
# through the batch channel to the bench's loopback sink. Run `cargo bench --bench campaign` once
# first (it builds the binaries and the member lists); then `scripts/campaign-callgrind.sh [N]`.
# Prints the total instructions of every thread of `run` and the instructions per message; the
# callgrind output stays in target/tmp/callgrind/ for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
bin=${PHASEGATE_BIN:-$PWD/target/release/phasegate}
bench=$(ls -t target/release/deps/campaign-* | grep -v '\.d$' | head -1)
base=$PWD/target/tmp/campaign-bench
list=$base/members-$n.jsonl
[ -f "$list" ] || { echo "no $list: run RECIPIENTS=$n cargo bench --bench campaign first" >&2; exit 1; }
out=${OUT:-$PWD/target/tmp/callgrind}
rm -rf "$out" && mkdir -p "$out/work"
PHASEGATE_CAMPAIGN_BENCH_SINK=1 "$bench" > "$out/sink.url" &
sink=$!
trap 'kill $sink' EXIT
while [ ! -s "$out/sink.url" ]; do sleep 0.1; done
url=$(head -1 "$out/sink.url")
cd "$out/work"
cat > phasegate.yaml <<YAML
people:
  riley: { roles: [incident-commander] }
secrets:
  OFFER_KEY: { env: OFFER_KEY }
outbound:
  allow: [127.0.0.1/32]
YAML
cat > campaign.yaml <<YAML
apiVersion: phasegate/v1
kind: Runbook
id: campaign-bench
title: A campaign of 2.1 million
roles:
  incident-commander: {}
inputs:
  member_list: { type: string }
channels:
  sink:
    batch:
      url: $url/batches
phases:
  - id: notify
    steps:
      - id: apology
        campaign:
          recipients: { input: member_list, id_field: member_id }
          template: customer-notice
          subject: Important information about your account, and our apology
          channel: sink
          batch_size: 1000
          concurrency: 4
          code: { secret: OFFER_KEY }
YAML
export PHASEGATE_TEMPLATES=${TEMPLATES:-$base/templates} OFFER_KEY=bench-offer-key-5c1e7a0d93b24f68 PHASEGATE_CONFIG=$PWD/phasegate.yaml
"$bin" start campaign.yaml --as riley --input "member_list=$list" --db phasegate.db > /dev/null
${TOOL:-valgrind --tool=callgrind --separate-threads=no --callgrind-out-file=$out/callgrind.out} \
  "$bin" run --config phasegate.yaml --db phasegate.db > /dev/null 2> "$out/valgrind.log"
sent=$(curl -s "$url/stats")
echo "sink: $sent"
# Another TOOL (`/usr/bin/time -v`) leaves no callgrind output: its report is in valgrind.log.
[ -f "$out/callgrind.out" ] || exit 0
total=$(grep -E '^(summary|totals):' "$out/callgrind.out" | head -1 | awk '{print $2}')
echo "instructions: $total for $n messages: $((total / n)) a message"
