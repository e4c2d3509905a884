#!/usr/bin/env python3
"""Verify a phasegate audit export without phasegate: docs/audit.md, written again in Python.

    verify-export.py EXPORT.jsonl PUBLIC_KEY.pem

Prints `verified` and exits 0, or prints the first problem and exits 1. Needs the `cryptography`
package for Ed25519; everything else is the standard library.
"""

import hashlib
import json
import math
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


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[2], "rb") as file:
        public_key = load_pem_public_key(file.read())
    raw = public_key.public_bytes_raw()
    fingerprint = "sha256:" + hashlib.sha256(raw).hexdigest()
    with open(sys.argv[1], encoding="utf-8") as file:
        # Not splitlines(): JSON strings may hold U+2028 and other characters it splits on.
        lines = [line for line in file.read().split("\n") if line.strip()]
    problem = verify(lines, public_key, fingerprint)
    if problem:
        print(problem)
        sys.exit(1)
    print(f"verified: {len(lines) - 1} lines, key {fingerprint}")


if __name__ == "__main__":
    main()
