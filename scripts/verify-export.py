#!/usr/bin/env python3
"""Verify a phasegate audit export without phasegate: docs/audit.md, written again in Python.

    verify-export.py EXPORT.jsonl PUBLIC_KEY.pem [--proof PROOF.json]

Prints `verified` and exits 0, or prints the first problem and exits 1. With `--proof` (what
`phasegate audit prove` prints), it then checks that the proof's root is the `merkle_root` the
verified export records for the proof's campaign, and that the proof's path takes its leaf to
that root: it prints `proven: ...`, or the problem and exits 1. Needs the `cryptography` package
for Ed25519; everything else is the standard library.
"""

import hashlib
import json
import math
import re
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key


def jcs_number(value):
    """A number as RFC 8785 writes it: the shortest ECMAScript form."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    digits = mantissa.replace(".", "")
    point = (mantissa.index(".") if "." in mantissa else len(mantissa)) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text


def jcs(value):
    """RFC 8785 canonical JSON of a parsed value."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return jcs_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
    return "{" + ",".join(json.dumps(key, ensure_ascii=False) + ":" + jcs(value[key]) for key in keys) + "}"


def verify(lines, public_key, fingerprint):
    header = json.loads(lines[0])
    if header.get("type") != "header" or header.get("format") != 1:
        return "line 1 is not a phasegate export header"
    incident = header["incident"]
    hashes = []
    checkpoints = []
    last = None
    for number, line in enumerate(lines[1:], start=2):
        item = json.loads(line)
        if item["type"] == "checkpoint":
            checkpoints.append(item)
            continue
        seq = len(hashes) + 1
        if item["seq"] != seq:
            return f"event {seq}: missing or out of order (line {number} has event {item['seq']})"
        prev = hashes[-1] if hashes else bytes(32)
        digest = hashlib.sha256(prev + seq.to_bytes(8, "big") + jcs(item["event"]).encode()).digest()
        if digest.hex() != item["hash"]:
            return f"event {seq}: does not match its recorded hash"
        started = item["event"]["event"]
        if seq == 1 and (started.get("type") != "incident_started" or started.get("incident") != incident):
            return f"event 1: is not the `incident_started` event of incident {incident}"
        hashes.append(digest)
        last = item["event"]
    if len(hashes) != header["events"] or len(checkpoints) != header["checkpoints"]:
        return f"the export says {header['events']} events and {header['checkpoints']} checkpoints"
    prev, covered = bytes(32), 0
    for index, item in enumerate(checkpoints, start=1):
        body = item["checkpoint"]
        message = jcs(body).encode()
        try:
            public_key.verify(bytes.fromhex(item["signature"]), message)
        except Exception:
            return f"checkpoint {index}: its signature does not verify with key {fingerprint}"
        if body["number"] != index or body["incident"] != incident or body["prev"] != prev.hex():
            return f"checkpoint {index}: does not follow the checkpoint before it"
        if not covered < body["events"] <= len(hashes):
            return f"checkpoint {index}: covers events 1 to {body['events']}; the log has {len(hashes)}"
        if hashes[body["events"] - 1].hex() != body["head"]:
            return f"checkpoint {index}: signed a different event {body['events']}"
        prev, covered = hashlib.sha256(message).digest(), body["events"]
    if last is not None and last["event"]["type"] == "incident_closed" and covered < len(hashes):
        return "the incident is closed but no checkpoint covers its end"
    return None


PROOF_FORMAT = "phasegate-merkle-proof/1"
OUTCOMES = ("sent", "rejected", "failed")
HASH = re.compile(r"[0-9a-f]{64}")
TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def climb(leaf_hash, index, size, path):
    """RFC 9162 section 2.1.3.2: the root that `path` takes leaf `index` of `size` to, or None."""
    if not 0 <= index < size:
        return None
    position, last, digest = index, size - 1, leaf_hash
    for sibling in path:
        if last == 0:
            return None
        if position % 2 == 1 or position == last:
            digest = node(sibling, digest)
            while position % 2 == 0 and position != 0:
                position, last = position >> 1, last >> 1
        else:
            digest = node(digest, sibling)
        position, last = position >> 1, last >> 1
    return digest if last == 0 else None


def leaf_problem(leaf):
    """What is wrong with a proof's leaf: only the fields a leaf has, each of its kind."""
    if not isinstance(leaf, dict):
        return "the proof's `leaf` is not an object"
    expected = {"at", "digest", "id", "outcome"} | ({"reason"} if leaf.get("outcome") != "sent" else set())
    if set(leaf) != expected:
        return f"the proof's leaf has the fields {sorted(leaf)}, not {sorted(expected)}"
    if leaf["outcome"] not in OUTCOMES:
        return f"the proof's leaf has the outcome {leaf['outcome']!r}, not one of {', '.join(OUTCOMES)}"
    if not isinstance(leaf["at"], str) or not TIME.fullmatch(leaf["at"]):
        return f"the proof's leaf has `at` {leaf['at']!r}, not a time like 2026-12-04T21:55:00Z"
    if not isinstance(leaf["digest"], str) or not HASH.fullmatch(leaf["digest"]):
        return "the proof's leaf has a `digest` that is not 64 lowercase hex digits"
    if not all(isinstance(leaf[key], str) for key in expected - {"at", "digest"}):
        return "the proof's leaf has an `id`, `outcome` or `reason` that is not a string"
    return None


def check_proof(lines, proof):
    """The verdict on a proof against a verified export: (problem, None) or (None, verdict)."""
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        return f"the proof is not a `{PROOF_FORMAT}` proof", None
    incident = json.loads(lines[0])["incident"]
    if proof.get("incident") != incident:
        return f"the proof is of incident {proof.get('incident')!r}, the export of {incident!r}", None
    campaign = proof.get("campaign")
    parts = campaign.split("/") if isinstance(campaign, str) else []
    if len(parts) != 3 or parts[0] != incident:
        return f"the proof's campaign {campaign!r} is not {incident}/PHASE/STEP", None
    problem = leaf_problem(proof.get("leaf"))
    if problem:
        return problem, None
    index, size, path, root = (proof.get(key) for key in ("index", "size", "path", "root"))
    if not all(type(number) is int for number in (index, size)):
        return "the proof's `index` and `size` are not integers", None
    if not isinstance(path, list) or not all(isinstance(item, str) and HASH.fullmatch(item) for item in path):
        return "the proof's `path` is not a list of hashes (64 lowercase hex digits each)", None
    if not isinstance(root, str) or not HASH.fullmatch(root):
        return "the proof's `root` is not 64 lowercase hex digits", None
    recorded = []
    for line in lines[1:]:
        item = json.loads(line)
        what = item.get("event", {}).get("event", {}) if item["type"] == "event" else {}
        if what.get("type") == "campaign_finished" and [what.get("phase"), what.get("step")] == parts[1:]:
            recorded.append((item["seq"], what.get("merkle_root"), what.get("leaves")))
    if not recorded:
        return f"the export has no `campaign_finished` event of campaign {campaign}", None
    found = [seq for seq, merkle_root, leaves in recorded if merkle_root == root and leaves == size]
    if not found:
        logged = "; ".join(f"event {seq}: {merkle_root} of {leaves} leaves" for seq, merkle_root, leaves in recorded)
        return f"the proof's root {root} of {size} leaves is not the root recorded for campaign {campaign} ({logged})", None
    leaf = proof["leaf"]
    leaf_hash = hashlib.sha256(b"\x00" + jcs(leaf).encode()).digest()
    if climb(leaf_hash, index, size, [bytes.fromhex(item) for item in path]) != bytes.fromhex(root):
        return f"the proof's path does not take its leaf (`{leaf['id']}`, leaf {index} of {size}) to the root", None
    reason = f" ({leaf['reason']})" if "reason" in leaf else ""
    return None, (
        f"proven: recipient `{leaf['id']}` is leaf {index} of {size} of campaign {campaign}: "
        f"{leaf['outcome']}{reason} at {leaf['at']}, message digest {leaf['digest']}; "
        f"the root is recorded in event {found[0]}"
    )


def main():
    arguments = sys.argv[1:]
    proof = None
    if len(arguments) == 4 and arguments[2] == "--proof":
        with open(arguments[3], encoding="utf-8") as file:
            try:
                proof = json.load(file)
            except json.JSONDecodeError as error:
                print(f"the proof is not JSON: {error}")
                sys.exit(1)
        arguments = arguments[:2]
    if len(arguments) != 2:
        sys.exit(__doc__)
    export, key = arguments
    with open(key, "rb") as file:
        public_key = load_pem_public_key(file.read())
    raw = public_key.public_bytes_raw()
    fingerprint = "sha256:" + hashlib.sha256(raw).hexdigest()
    with open(export, encoding="utf-8") as file:
        # Not splitlines(): JSON strings may hold U+2028 and other characters it splits on.
        lines = [line for line in file.read().split("\n") if line.strip()]
    problem = verify(lines, public_key, fingerprint)
    if problem:
        print(problem)
        sys.exit(1)
    print(f"verified: {len(lines) - 1} lines, key {fingerprint}")
    if proof is not None:
        problem, verdict = check_proof(lines, proof)
        if problem:
            print(problem)
            sys.exit(1)
        print(verdict)


if __name__ == "__main__":
    main()
