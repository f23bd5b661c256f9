#!/usr/bin/env python3
"""The soak's load: a mixed, fixed-rate load through the gateway (standard library
only), run by scripts/soak.sh against the platform it started. Prints a JSON report on
stdout: requests by route and status, p50/p99 per route, webhook deliveries received.

Mix (per second, at SOAK_RATE requests/s): authenticated reads, listings, uploads of
1 KiB to 1 MiB, downloads, audit-log reads, logins, membership changes; a new tenant
(with a webhook to a local receiver) every SOAK_TENANT_EVERY seconds.
"""
import http.server
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

GATEWAY = os.environ.get("SOAK_GATEWAY", "http://127.0.0.1:4999")
SECONDS = int(os.environ.get("SOAK_SECS", "600"))
RATE = float(os.environ.get("SOAK_RATE", "20"))
TENANT_EVERY = float(os.environ.get("SOAK_TENANT_EVERY", "15"))
PASSWORD = "correct horse 1"
RUN = uuid.uuid4().hex[:8]

lock = threading.Lock()
results = {}  # route -> {"statuses": {code: n}, "latencies": [s]}
received = {"deliveries": 0, "ids": set()}


def record(route, status, seconds):
    with lock:
        entry = results.setdefault(route, {"statuses": {}, "latencies": []})
        entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
        entry["latencies"].append(seconds)


def call(route, method, path, token=None, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(GATEWAY + path, data=data, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload = error.read()
        status = error.code
    except Exception:  # connection refused, timeout: counted as 599
        payload = b""
        status = 599
    record(route, status, time.monotonic() - started)
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, None


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            received["deliveries"] += 1
            received["ids"].add(self.headers.get("webhook-id"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


class State:
    """Tenants and documents name their user by email: access tokens last 15 minutes
    and are replaced every 5 (a soak longer than 15 minutes otherwise sends expired
    tokens and counts the 401s)."""

    def __init__(self):
        self.tokens = {}  # email -> current access token
        self.tenants = []  # (tenant id, admin email)
        self.documents = []  # (tenant id, document id, email)

    def user(self):
        email = random.choice(list(self.tokens))
        return email, self.tokens[email]


def register(email):
    call("register", "POST", "/api/auth/register", body={
        "first_name": "Soak", "last_name": "Load", "email": email, "password": PASSWORD})
    return login(email)


def login(email):
    status, body = call("login", "POST", "/api/auth/login", body={"email": email, "password": PASSWORD})
    if status != 200:
        sys.exit(f"login of {email} failed: {status} {body}")
    return body["access_token"]


def create_tenant(state, hook_url):
    email, token = state.user()
    status, body = call("create tenant", "POST", "/api/tenants", token, {"name": f"Soak {RUN} {uuid.uuid4().hex[:6]}"})
    if status != 201:
        return
    tenant = body["data"]["id"]
    call("create webhook", "POST", f"/api/tenants/{tenant}/webhooks", token,
         {"url": hook_url, "event_types": ["document.uploaded", "document.deleted", "membership.changed"]})
    with lock:
        state.tenants.append((tenant, email))


def upload(state):
    tenant, email = random.choice(state.tenants)
    token = state.tokens[email]
    size = random.choice([1024, 16 * 1024, 256 * 1024, 1024 * 1024])
    content = os.urandom(size)
    boundary = uuid.uuid4().hex
    raw = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"s{size}.bin\"\r\n"
           f"content-type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    status, body = call("upload", "POST", f"/api/tenants/{tenant}/documents", token,
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"}, raw=raw)
    if status == 201:
        with lock:
            state.documents.append((tenant, body["data"]["id"], email))


def download(state):
    if not state.documents:
        return
    tenant, document, email = random.choice(state.documents)
    call("download", "GET", f"/api/tenants/{tenant}/documents/{document}/download", state.tokens[email])


def membership(state):
    tenant, admin_email = random.choice(state.tenants)
    admin = state.tokens[admin_email]
    email, member = state.user()
    status, me = call("users/me", "GET", "/api/users/me", member)
    if status != 200:
        return
    user_id = me["data"]["id"]
    status, _ = call("add member", "POST", f"/api/tenants/{tenant}/users", admin, {"user_id": user_id, "role": "viewer"})
    if status == 201:
        call("change role", "PUT", f"/api/tenants/{tenant}/users/{user_id}", admin, {"role": "user"})


def one_request(state):
    roll = random.random()
    email, token = state.user()
    tenant, admin_email = random.choice(state.tenants)
    admin = state.tokens[admin_email]
    if roll < 0.25:
        call("users/me", "GET", "/api/users/me", token)
    elif roll < 0.40:
        call("my tenants", "GET", "/api/users/me/tenants", token)
    elif roll < 0.60:
        call("list documents", "GET", f"/api/tenants/{tenant}/documents?per_page=20", admin)
    elif roll < 0.72:
        upload(state)
    elif roll < 0.84:
        download(state)
    elif roll < 0.90:
        call("audit log", "GET", f"/api/tenants/{tenant}/audit-logs?per_page=20", admin)
    elif roll < 0.95:
        call("login", "POST", "/api/auth/login", body={"email": email, "password": PASSWORD})
    else:
        membership(state)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def main():
    hook_url = start_receiver()
    state = State()
    for n in range(4):
        email = f"soak{n}-{RUN}@example.com"
        state.tokens[email] = register(email)
    for _ in range(3):
        create_tenant(state, hook_url)
    if not state.tenants:
        sys.exit("no tenant could be created")
    started = time.monotonic()
    next_tenant = started + TENANT_EVERY
    interval = 1.0 / RATE
    sent = 0
    with ThreadPoolExecutor(max_workers=64) as pool:
        while True:
            now = time.monotonic()
            if now - started >= SECONDS:
                break
            # Access tokens last 15 minutes: refresh them by logging in again.
            if sent and sent % int(RATE * 300) == 0:
                state.tokens = {e: login(e) for e in state.tokens}
            if now >= next_tenant:
                pool.submit(create_tenant, state, hook_url)
                next_tenant += TENANT_EVERY
            pool.submit(one_request, state)
            sent += 1
            delay = started + sent * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    elapsed = time.monotonic() - started
    report = {"seconds": round(elapsed, 1), "rate": RATE, "routes": {}, "statuses": {}}
    for route, entry in sorted(results.items()):
        latencies = entry["latencies"]
        report["routes"][route] = {
            "requests": len(latencies),
            "statuses": entry["statuses"],
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        }
        for status, n in entry["statuses"].items():
            report["statuses"][str(status)] = report["statuses"].get(str(status), 0) + n
    report["tenants"] = len(state.tenants)
    report["uploads_stored"] = len(state.documents)
    # The last webhook deliveries: until none arrived for 2 s (30 s at most).
    deadline, last, quiet_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 2:
        with lock:
            now = received["deliveries"]
        if now != last:
            last, quiet_since = now, time.monotonic()
        time.sleep(0.1)
    report["webhook_deliveries"] = received["deliveries"]
    report["webhook_ids"] = len(received["ids"])
    json.dump(report, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":
    main()
