#!/usr/bin/env python3
"""Check a nightwatch webhook signature, as a receiver would.

A signed request carries the raw JSON body and two headers:
    X-Nightwatch-Timestamp: 1700000000
    X-Nightwatch-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
Verify the body exactly as received, before parsing it.
"""
import hashlib
import hmac
import sys
import time


def verify(secret: bytes, body: bytes, timestamp: str, signature: str,
           tolerance: float = 300, now: float = None) -> bool:
    """True when signature signs this body at this timestamp and the
    timestamp is within tolerance seconds of now (a replay is refused)."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    expected = "sha256=" + mac.hexdigest()
    # compare_digest takes as long for a near miss as for a far one
    return hmac.compare_digest(expected.encode(), signature.encode())


if __name__ == "__main__":
    # verify_signature.py SECRET_FILE BODY_FILE TIMESTAMP SIGNATURE
    # exit 0: valid; 1: not. nightwatch strips the secret file's newline.
    with open(sys.argv[1], "rb") as f:
        secret = f.read().rstrip(b"\r\n")
    with open(sys.argv[2], "rb") as f:
        body = f.read()
    sys.exit(0 if verify(secret, body, sys.argv[3], sys.argv[4]) else 1)
