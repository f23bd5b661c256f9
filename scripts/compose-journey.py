#!/usr/bin/env python3
"""The README's journey against a running gateway, as a client sees it: two users, a
tenant, a member, an upload twice (one stored file), the download through the gateway
and from S3 by a presigned URL, an HTML page served by S3 as an attachment only, the
viewer's refusal, the deletion, the audit log, and
the internal routes refused. Prints one line per step (status and what it checked) and
exits 1 at the first step that answers otherwise. Standard library only.

    scripts/compose-journey.py http://127.0.0.1:4999 --state FILE                  # the journey
    scripts/compose-journey.py http://127.0.0.1:4999 --state FILE --after-restart

The first form writes what a later check needs (a token, the tenant) to FILE; the
second, run after a service restarted, checks that the same user still lists, uploads
and downloads documents of that tenant.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

STARTED = time.monotonic()


class JourneyError(Exception):
    pass


def call(base, method, path, token=None, body=None, form=None, raw_url=None):
    """One request; returns (status, headers, bytes). Never raises on an HTTP status."""
    url = raw_url or base + path
    headers = {}
    data = None
    if token:
        headers["authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if form is not None:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in form.items():
            if isinstance(value, tuple):
                filename, content = value
                parts.append(
                    f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"; '
                    f'filename="{filename}"\r\ncontent-type: text/plain\r\n\r\n'.encode()
                    + content
                    + b"\r\n"
                )
            else:
                parts.append(
                    f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode()
                )
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["content-type"] = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def step(name, status, expected, detail=""):
    elapsed = time.monotonic() - STARTED
    mark = "ok " if status == expected else "FAIL"
    print(f"{mark} {elapsed:6.1f}s  {status}  {name}{('  ' + detail) if detail else ''}", flush=True)
    if status != expected:
        raise JourneyError(f"{name}: expected {expected}, got {status}")


def data_of(payload):
    try:
        return json.loads(payload)
    except ValueError as e:
        raise JourneyError(f"not JSON: {payload[:200]!r}") from e


def until(what, timeout, probe):
    """Polls probe() until it returns a true value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise JourneyError(f"{what}: not seen within {timeout} s")
        time.sleep(0.5)


def journey(g, state_file):
    status, _, body = call(g, "GET", "/health")
    step("GET /health", status, 200, data_of(body).get("status", ""))

    run = uuid.uuid4().hex[:8]
    password = "correct horse 1"
    emails = {who: f"{who}-{run}@example.com" for who in ("ada", "bob")}
    tokens = {}
    for who, email in emails.items():
        status, _, body = call(g, "POST", "/api/auth/register", body={
            "first_name": who, "last_name": "Example", "email": email, "password": password})
        step(f"register {who}", status, 201)
        status, _, body = call(g, "POST", "/api/auth/login", body={"email": email, "password": password})
        tokens[who] = data_of(body).get("access_token")
        step(f"login {who}", status, 200, "access token" if tokens[who] else "no token")
        if not tokens[who]:
            raise JourneyError("login answered no access_token")
    ada, bob = tokens["ada"], tokens["bob"]

    status, _, body = call(g, "GET", "/api/users/me", token=bob)
    bob_id = data_of(body)["data"]["id"] if status == 200 else None
    step("GET /api/users/me (bob)", status, 200)

    status, _, body = call(g, "POST", "/api/tenants", token=ada, body={"name": f"Ada Corp {run}"})
    step("create tenant", status, 201)
    tenant = data_of(body)["data"]
    tenant_id = tenant["id"]

    def active():
        s, _, b = call(g, "GET", f"/api/tenants/{tenant_id}", token=ada)
        return s == 200 and data_of(b)["data"].get("status") == "active"

    until("tenant active", 60, active)
    step("tenant active", 200, 200, tenant_id)

    status, _, body = call(g, "POST", f"/api/tenants/{tenant_id}/users", token=ada,
                           body={"user_id": bob_id, "role": "viewer"})
    step("add bob as viewer", status, 201)

    content = f"hello platform {run}\n".encode()
    docs = f"/api/tenants/{tenant_id}/documents"
    status, _, body = call(g, "POST", docs, token=ada, form={"file": ("hello.txt", content)})
    step("upload", status, 201)
    first = data_of(body)["data"]
    status, _, body = call(g, "POST", docs, token=ada,
                           form={"file": ("hello.txt", content), "filename": "copy.txt"})
    step("upload the same bytes again", status, 201)
    second = data_of(body)["data"]
    if first["file_id"] != second["file_id"] or first["id"] == second["id"]:
        raise JourneyError(f"deduplication: {first} / {second}")
    step("two documents, one stored file", 200, 200, first["file_id"])

    doc = first["id"]
    status, headers, body = call(g, "GET", f"{docs}/{doc}/download", token=ada)
    step("download through the gateway", status, 200)
    if body != content:
        raise JourneyError(f"downloaded {body!r}, uploaded {content!r}")

    status, _, body = call(g, "GET", f"{docs}/{doc}/download-url", token=ada)
    step("presigned URL", status, 200)
    url = data_of(body)["data"]["download_url"]
    status, _, body = call(g, "GET", "", raw_url=url)
    step("download from S3 by the presigned URL", status, 200)
    if body != content:
        raise JourneyError(f"presigned download gave {body!r}")

    # An uploaded page never runs from the storage origin: S3 answers the presigned GET
    # as an attachment of type application/octet-stream (headers signed into the URL).
    status, _, body = call(g, "POST", docs, token=ada, form={
        "file": ("page.html", b"<script>alert(document.domain)</script>"), "mime_type": "text/html"})
    step("upload an HTML page", status, 201)
    page = data_of(body)["data"]["id"]
    status, _, body = call(g, "GET", f"{docs}/{page}/download-url", token=ada)
    step("its presigned URL", status, 200)
    status, headers, _ = call(g, "GET", "", raw_url=data_of(body)["data"]["download_url"])
    served = (headers.get("content-type"), (headers.get("content-disposition") or "").split(";")[0])
    step("S3 serves it as an attachment", status, 200, f"{served[0]}, {served[1]}")
    if served != ("application/octet-stream", "attachment"):
        raise JourneyError(f"the page is served as {served}")
    status, _, _ = call(g, "DELETE", f"{docs}/{page}", token=ada)
    step("delete the page", status, 200)

    status, _, body = call(g, "GET", docs, token=bob)
    step("viewer lists the documents", status, 200,
         f"total {data_of(body)['data']['pagination']['total']}")
    status, _, body = call(g, "DELETE", f"{docs}/{doc}", token=bob)
    step("viewer may not delete", status, 403, data_of(body).get("error", ""))
    status, _, body = call(g, "DELETE", f"{docs}/{doc}", token=ada)
    step("admin deletes", status, 200)

    wanted = {"document.uploaded", "document.deleted", "membership.changed"}

    def audited():
        s, _, b = call(g, "GET", f"/api/tenants/{tenant_id}/audit-logs?per_page=100", token=ada)
        if s != 200:
            return None
        types = {entry["type"] for entry in data_of(b)["data"]["audit_logs"]}
        return types if wanted <= types else None

    types = until("audit log entries " + ", ".join(sorted(wanted)), 60, audited)
    step("audit log", 200, 200, ", ".join(sorted(types)))

    status, _, _ = call(g, "GET", "/internal/v1/tenant-databases")
    step("GET /internal/v1/tenant-databases", status, 404)
    status, _, _ = call(g, "GET", "/internal/v1/tenants/..%2F..%2F..%2Fapi%2Ftenants")
    step("encoded path to /internal", status, 400)

    with open(state_file, "w", encoding="utf-8") as f:
        json.dump({"token": ada, "tenant_id": tenant_id, "documents": 1}, f)


def after_restart(g, state_file):
    with open(state_file, encoding="utf-8") as f:
        state = json.load(f)
    docs = f"/api/tenants/{state['tenant_id']}/documents"
    token = state["token"]

    def listed():
        s, _, b = call(g, "GET", docs, token=token)
        return b if s == 200 else None

    body = until("the document list after the restart", 60, listed)
    step("list after the restart", 200, 200, f"total {data_of(body)['data']['pagination']['total']}")
    content = f"after restart {uuid.uuid4().hex}\n".encode()
    status, _, body = call(g, "POST", docs, token=token, form={"file": ("after.txt", content)})
    step("upload after the restart", status, 201)
    doc = data_of(body)["data"]["id"]
    status, _, body = call(g, "GET", f"{docs}/{doc}/download", token=token)
    step("download after the restart", status, 200)
    if body != content:
        raise JourneyError(f"downloaded {body!r} after the restart")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("gateway")
    parser.add_argument("--state", required=True, help="file the journey writes, the restart check reads")
    parser.add_argument("--after-restart", action="store_true")
    args = parser.parse_args()
    g = args.gateway.rstrip("/")
    try:
        (after_restart if args.after_restart else journey)(g, args.state)
    except (JourneyError, KeyError, TypeError) as e:
        print(f"journey failed: {e!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
