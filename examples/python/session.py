"""A full hookrpc session with jsonrpcclient (PyPI), a JSON-RPC 2.0 library nobody here wrote.

    python session.py URL KEY [OBJECT EVENT]

jsonrpcclient builds the requests (params by position, as a tuple) and parses the replies into
Ok/Error; the HTTP is the standard library's urllib. OBJECT/EVENT (default contact/subscribed)
must be an event of the server's catalog, so the same session runs against Vision6's catalog and
a shop's (orders/place). Exits non-zero on any mismatch, so CI can run it.
"""

import json
import random
import sys
import time
import urllib.request

from jsonrpcclient import Error, Ok, parse, request

if len(sys.argv) < 3:
    sys.exit("usage: python session.py URL KEY [OBJECT EVENT]")
URL, KEY = sys.argv[1], sys.argv[2]
OBJECT = sys.argv[3] if len(sys.argv) > 3 else "contact"
EVENT = sys.argv[4] if len(sys.argv) > 4 else "subscribed"


class Mismatch(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Mismatch(what)


def post(body):
    """POSTs one request or a batch; returns the decoded reply after checking its 2.0 shape."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(URL, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        check(res.status == 200, f"HTTP {res.status}")
        check(res.headers.get_content_type() == "application/json", f"content type {res.headers['Content-Type']}")
        reply = json.loads(res.read())
    for one in reply if isinstance(reply, list) else [reply]:
        check(one.get("jsonrpc") == "2.0", f"2.0 reply without jsonrpc 2.0: {one}")
        check(("result" in one) != ("error" in one), f"2.0 reply with both or neither result/error: {one}")
    return reply


def call(method, *params):
    sent = request(method, params=params)
    response = parse(post(sent))
    check(response.id == sent["id"], f"{method}: id {response.id!r} for {sent['id']!r}")
    return response


def ok(method, *params):
    response = call(method, *params)
    check(isinstance(response, Ok), f"{method}: unexpected {response}")
    return response.result


def fails(code, method, *params):
    response = call(method, *params)
    check(isinstance(response, Error) and response.code == code, f"{method}: expected error {code}, got {response}")
    return response


def batch(*calls):
    sent = [request(method, params=params) for method, *params in calls]
    replies = {r.id: r for r in parse(post(sent))}
    check(sorted(replies) == sorted(r["id"] for r in sent), f"batch ids {sorted(replies)}")
    return [replies[r["id"]] for r in sent]


def session():
    tag = f"python-{int(time.time() * 1000):x}{random.randrange(1 << 16):04x}"
    hook_url = f"https://hooks.acme.io/{tag}/{OBJECT}.{EVENT}"
    criteria = [["url", "contains", tag]]
    # Webhook and event on a list of their own, so other clients' webhooks on the server do not match.
    list_id = random.randrange(1, 2_000_000_000)
    label = f"jsonrpcclient {OBJECT}.{EVENT}"

    webhook_id = ok("addWebhook", KEY, {"object": OBJECT, "event": EVENT, "list_id": list_id, "url": hook_url})
    check(isinstance(webhook_id, int) and webhook_id > 0, f"addWebhook id {webhook_id!r}")
    print(f"ok   {label}: addWebhook {webhook_id}")

    webhook = ok("getWebhookById", KEY, webhook_id)
    for field, value in [("id", webhook_id), ("url", hook_url), ("object", OBJECT), ("event", EVENT), ("is_active", True)]:
        check(webhook[field] == value, f"getWebhookById {field}: {webhook[field]!r}, expected {value!r}")
    print(f"ok   {label}: getWebhookById {webhook['name']}")

    check(ok("editWebhook", KEY, webhook_id, {"description": f"edited by {tag}", "is_active": True}) is True, "editWebhook")
    print(f"ok   {label}: editWebhook")

    found, count = batch(("searchWebhooks", KEY, criteria, 10, 0, "id", "DESC"), ("countWebhooks", KEY, criteria))
    check(isinstance(found, Ok) and [w["id"] for w in found.result] == [webhook_id], f"searchWebhooks: {found}")
    check(found.result[0]["description"] == f"edited by {tag}", "the edit is visible")
    check(isinstance(count, Ok) and count.result == 1, f"countWebhooks: {count}")
    print(f"ok   {label}: searchWebhooks and countWebhooks (one batch)")

    data = {"client": "jsonrpcclient", "tag": tag}
    event_id = ok("addEvent", KEY, {"object": OBJECT, "event": EVENT, "list_id": list_id, "data": data})
    check(isinstance(event_id, int) and event_id > 0, f"addEvent id {event_id!r}")
    print(f"ok   {label}: addEvent {event_id}")

    event = ok("getEventById", KEY, event_id)
    check((event["object"], event["event"], event["data"]) == (OBJECT, EVENT, data), f"getEventById: {event}")
    check(event["list_id"] == list_id, f"getEventById list_id: {event}")
    deliveries = ok("searchDeliveries", KEY, [["event_id", "exactly", event_id]])
    check(event["delivery_count"] == len(deliveries), f"delivery_count counts the deliveries: {event}, {deliveries}")
    ours = [d for d in deliveries if d["webhook_id"] == webhook_id]
    check(len(ours) == 1, f"one delivery to the webhook: {deliveries}")
    print(f"ok   {label}: getEventById and searchDeliveries: delivery {ours[0]['id']}")

    bad = fails(310, "addWebhook", KEY, {"object": OBJECT, "event": "no_such_event", "url": hook_url + "/bad"})
    check(EVENT in json.dumps([bad.message, bad.data]), f"310 names the valid events: {bad}")
    print(f"error 310 for event no_such_event: {bad.data}")
    missing = fails(350, "getWebhookById", KEY, 2_000_000_000)
    print(f"error 350 for webhook 2000000000: {missing.message}")

    check(ok("deleteWebhook", KEY, webhook_id) is True, "deleteWebhook")
    fails(350, "getWebhookById", KEY, webhook_id)
    print(f"ok   {label}: deleteWebhook, then 350 for it")


try:
    session()
except (Mismatch, KeyError, TypeError, OSError, ValueError) as e:
    sys.exit(f"FAIL jsonrpcclient session against {URL} ({OBJECT}.{EVENT}): {type(e).__name__}: {e}")
print(f"jsonrpcclient {OBJECT}.{EVENT}: all checks passed")
