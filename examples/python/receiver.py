#!/usr/bin/env python3
"""Receiving Sluice webhooks with nothing but the Python standard library.

Verifies Standard Webhooks v1 signatures (HMAC-SHA256) over the raw body,
de-duplicates on webhook-id, applies each change once by its idempotency key.
Env: SLUICE_WEBHOOK_SECRET (whsec_..., several separated by spaces while
rotating), PORT (default 3000), HOST (default 127.0.0.1).
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300  # how far webhook-timestamp may be from our clock, either way
MAX_BODY_BYTES = 10 * 1024 * 1024


class VerificationError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def decode_secret(secret):
    """The HMAC key is the base64-DECODED part after "whsec_", not the string itself."""
    secret = secret.strip()
    if not secret.startswith("whsec_"):
        # whpk_ (ed25519, "v1a") needs a library such as `cryptography`; the stdlib has no ed25519.
        raise ValueError('SLUICE_WEBHOOK_SECRET must be a "whsec_..." secret, prefix included')
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except binascii.Error:
        raise ValueError('SLUICE_WEBHOOK_SECRET is not valid base64 after "whsec_"') from None
    if not 24 <= len(key) <= 64:
        raise ValueError("SLUICE_WEBHOOK_SECRET decodes to %d bytes; whsec_ secrets hold 24-64" % len(key))
    return key


def verify(body, msg_id, timestamp, signature, keys, tolerance=TOLERANCE_SECONDS):
    """Checks the three header values, the timestamp window and the signatures
    over the raw `body` bytes; returns the messages. Framework-neutral: Django,
    Flask or anything else passes its own raw body and header values."""
    if not msg_id or not timestamp or not signature:
        raise VerificationError("missing_header", "missing webhook-id, webhook-timestamp or webhook-signature")
    if not re.fullmatch(r"[0-9]{1,15}", timestamp.strip()):
        raise VerificationError("invalid_timestamp", "webhook-timestamp is not Unix seconds")
    ts = int(timestamp)
    now = int(time.time())
    if now - ts > tolerance:
        raise VerificationError("timestamp_too_old", "webhook-timestamp is %d s in the past" % (now - ts))
    if ts - now > tolerance:
        raise VerificationError("timestamp_too_new", "webhook-timestamp is %d s in the future" % (ts - now))

    signed = ("%s.%d." % (msg_id.strip(), ts)).encode() + body
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    # "v1,<b64> v1,<b64> ...": one entry per secret Sluice signs with (two while it rotates).
    # Any one match is enough; other versions (v1a) and undecodable entries are skipped.
    matched = False
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        for digest in expected:
            matched |= hmac.compare_digest(digest, candidate)  # constant time
    if not matched:
        raise VerificationError("no_matching_signature", "no signature matches the secret(s); is the body the raw bytes?")

    # Parse only now that the bytes are known to come from Sluice.
    try:
        value = json.loads(body)
    except ValueError:
        raise VerificationError("invalid_body", "signed body is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise VerificationError("invalid_body", "signed body is not a JSON object")
    # Batched: {"data": [message, ...]}; batching off: the bare message.
    return value["data"] if isinstance(value.get("data"), list) else [value]


class BoundedSet:
    """Remembers the newest `limit` keys. In production use a table with a
    unique constraint, written in the same transaction as the change's effects."""

    def __init__(self, limit):
        self.limit = limit
        self.items = OrderedDict()

    def __contains__(self, key):
        return key in self.items

    def add(self, key):
        self.items[key] = True
        if len(self.items) > self.limit:
            self.items.popitem(last=False)  # the oldest


seen_deliveries = BoundedSet(10_000)  # webhook-id: the same delivery retried
applied_changes = BoundedSet(100_000)  # metadata.idempotency_key: the same change in another delivery
lock = threading.Lock()  # ThreadingHTTPServer runs requests on several threads


def log(**fields):
    print(json.dumps(fields), flush=True)


def handle_delivery(webhook_id, messages):
    with lock:
        if webhook_id in seen_deliveries:
            log(event="duplicate_delivery", webhook_id=webhook_id)
            return {"duplicate": True, "processed": 0, "skipped": len(messages)}
        processed = 0
        for message in messages:
            meta = message["metadata"]
            key = meta["idempotency_key"]
            if key in applied_changes:
                log(event="duplicate_change", webhook_id=webhook_id, idempotency_key=key)
                continue
            # Your business logic goes here.
            log(event="processed", webhook_id=webhook_id, idempotency_key=key,
                table="%s.%s" % (meta["table_schema"], meta["table_name"]),
                action=message["action"], record_pks=meta["record_pks"])
            applied_changes.add(key)
            processed += 1
        # Marked after every message is applied: a failure halfway answers 500,
        # Sluice retries this webhook-id, and the idempotency keys skip what was done.
        seen_deliveries.add(webhook_id)
        return {"duplicate": False, "processed": processed, "skipped": len(messages) - processed}


class WebhookHandler(BaseHTTPRequestHandler):
    keys = []

    def do_POST(self):
        if self.path.split("?")[0] != "/webhooks":  # a webhook URL may carry a query
            return self.reply(404, {"error": "not_found"})
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            return self.reply(411, {"error": "length_required"})
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            return self.reply(413, {"error": "body_too_large"})
        body = self.rfile.read(int(length))  # the raw bytes: what was signed
        # self.headers is case-insensitive. A proxy may split one header into
        # several lines: join the signature lines back with spaces.
        signature = " ".join(self.headers.get_all("webhook-signature") or [])
        try:
            messages = verify(body, self.headers.get("webhook-id"), self.headers.get("webhook-timestamp"), signature, self.keys)
        except VerificationError as err:
            log(event="rejected", code=err.code, message=str(err))
            return self.reply(400, {"error": err.code, "message": str(err)})
        try:
            outcome = handle_delivery(self.headers.get("webhook-id").strip(), messages)
        except Exception as err:  # our bug or an outage: 500 makes Sluice retry later
            print("error: %r" % err, file=sys.stderr, flush=True)
            return self.reply(500, {"error": "internal"})
        self.reply(200, outcome)

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # stdout carries one JSON line per event instead


def main():
    try:
        WebhookHandler.keys = [decode_secret(s) for s in os.environ.get("SLUICE_WEBHOOK_SECRET", "").split()]
    except ValueError as err:
        sys.exit(str(err))
    if not WebhookHandler.keys:
        sys.exit("set SLUICE_WEBHOOK_SECRET to the consumer's whsec_... secret")
    host = os.environ.get("HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, int(os.environ.get("PORT", "3000"))), WebhookHandler)
    log(event="listening", url="http://%s:%d/webhooks" % (host, server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
