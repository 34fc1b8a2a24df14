#!/usr/bin/env python3
"""moto server, one request at a time.

moto's own `moto_server` serves requests on threads without a lock, so two
concurrent conditional writes to one DynamoDB item can both succeed: a race
real DynamoDB never has (its conditional writes and transactions are
serialisable). flakefleet's lease depends on exactly that guarantee, so the
local AWS serialises requests.

moto also finds one EC2 resource's tags by scanning every tag in the region,
which makes a DescribeInstances tag filter quadratic in the fleet's size
(2.6 s for a 5-instance page of 2,000 instances). The patch below looks the
resource up by id and answers the same list, so benchmarks at 10,000
instances measure flakefleet rather than that scan.

AWS is stricter than moto in ways flakefleet must survive; `Strict` below
reproduces them, each scripted per test through `POST /_strict/...` on this
server's port (scoped to one test's table or fleet tag, since the tests share
one server). See dev/README.md for the schema and the AWS documentation each
follows.

CloudWatch's Smithy RPC v2 CBOR, which the Rust SDK speaks and moto does
not, is translated by `RpcV2Cbor` (dev/rpcv2_cbor.py).

Usage: moto_server.py HOST PORT
"""

import copy
import io
import json
import random
import sys
import threading
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, urlencode

from werkzeug.serving import run_simple

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from rpcv2_cbor import RpcV2Cbor


def _tags_of(resource):
    """TaggedEC2Resource.get_tags, by id instead of by scanning every tag."""
    rid = getattr(resource, "id", None)
    if not rid:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
    tags = resource.ec2_backend.tags.get(rid, {})
    return [{"resource_id": rid, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


TaggedEC2Resource.get_tags = _tags_of


CANCEL_REASONS = {"TransactionConflict", "ThrottlingError"}


class BadRule(Exception):
    pass


class Strict:
    """Scripted strictness in front of moto:

    - TransactWriteItems on a table cancelled as a whole with a
      `TransactionConflict` or `ThrottlingError` reason (DynamoDB does so when
      another transaction holds an item, or under load), for a count of calls
      or a fraction of them;
    - DescribeInstances filtered on a fleet's tag answered in short pages,
      empty ones included, that still carry a NextToken (EC2 filters after
      paging: only a null NextToken means "no more").
    """

    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()
        self.faults, self.pages = [], []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_strict/"):
            return self.control(path, environ, start_response)
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.endswith(".TransactWriteItems"):
            reason = self.transact_fault(json.loads(body or b"{}"))
            if reason:
                return self.cancelled(json.loads(body), reason, start_response)
        if target == "AWSEvents.PutEvents":
            refused = put_events_too_large(json.loads(body or b"{}"))
            if refused:
                return answer(start_response, "400 Bad Request", refused, "application/x-amz-json-1.1")
        if b"Action=DescribeInstances" in body:
            params = parse_qsl(body.decode())
            rule = self.page_rule(params)
            if rule is not None:
                return self.short_pages(environ, params, rule, start_response)
        return self.app(environ, start_response)

    # -- control ------------------------------------------------------------

    def control(self, path, environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        try:
            rule = json.loads(raw or b"{}")
            if path == "/_strict/reset":
                with self.lock:
                    self.faults, self.pages = [], []
            elif path == "/_strict/faults":
                self.faults.append(check_fault(rule))
            elif path == "/_strict/pages":
                self.pages.append(check_pages(rule))
            else:
                raise BadRule(f"no such control endpoint {path}; use /_strict/faults, /_strict/pages or /_strict/reset")
        except (BadRule, ValueError) as e:
            return answer(start_response, "400 Bad Request", {"error": "invalid_rule", "message": str(e)})
        return answer(start_response, "200 OK", {"ok": True})

    # -- DynamoDB -----------------------------------------------------------

    def transact_fault(self, request):
        tables = {item[kind]["TableName"] for item in request.get("TransactItems", []) for kind in item}
        with self.lock:
            for fault in self.faults:
                if fault["table"] not in tables:
                    continue
                if "count" in fault:
                    if fault["count"] > 0:
                        fault["count"] -= 1
                        return fault["reason"]
                elif random.random() < fault["fraction"]:
                    return fault["reason"]
        return None

    def cancelled(self, request, reason, start_response):
        items = request.get("TransactItems", [])
        reasons = [{"Code": "None"} for _ in items]
        message = "Transaction is ongoing for the item" if reason == "TransactionConflict" else "Throughput exceeds the current capacity"
        if reasons:
            reasons[0] = {"Code": reason, "Message": message}
        codes = ", ".join(r["Code"] for r in reasons)
        return answer(
            start_response,
            "400 Bad Request",
            {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                "CancellationReasons": reasons,
            },
            "application/x-amz-json-1.0",
        )

    # -- EC2 ----------------------------------------------------------------

    def page_rule(self, params):
        tag_values = {v for k, v in params if k.startswith("Filter.") and ".Value." in k}
        names = {v for k, v in params if k.startswith("Filter.") and k.endswith(".Name")}
        if not any(n.startswith("tag:") for n in names):
            return None
        with self.lock:
            return next((r for r in self.pages if r["tag_value"] in tag_values), None)

    def short_pages(self, environ, params, rule, start_response):
        token = dict(params).get("NextToken")
        max_results = int(dict(params).get("MaxResults") or 1000)
        offset, page = 0, 0
        if token:
            try:
                _, offset, page = token.split("-")
                offset, page = int(offset), int(page)
            except ValueError:
                return answer(start_response, "400 Bad Request", {"error": "InvalidParameterValue", "message": f"bad NextToken {token}"})
        # Everything that matches, in one answer from moto; then one page of it.
        whole = urlencode([(k, v) for k, v in params if k not in ("MaxResults", "NextToken")]).encode()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(whole), str(len(whole))
        status, headers, body = call(self.app, environ)
        if not status.startswith("200"):
            start_response(status, headers)
            return [body]
        root = ET.fromstring(body)
        ns = root.tag[1 : root.tag.index("}")]
        ET.register_namespace("", ns)
        reservations = root.find(f"{{{ns}}}reservationSet")
        pairs = [(r, i) for r in list(reservations) for i in list(r.find(f"{{{ns}}}instancesSet"))]
        size = min(rule["page_sizes"][page % len(rule["page_sizes"])], max_results)
        chosen = pairs[offset : offset + size]
        for r in list(reservations):
            reservations.remove(r)
        for reservation in dict.fromkeys(r for r, _ in chosen):
            kept = copy.deepcopy(reservation)
            instances = kept.find(f"{{{ns}}}instancesSet")
            for item in list(instances):
                instances.remove(item)
            for r, i in chosen:
                if r is reservation:
                    instances.append(copy.deepcopy(i))
            reservations.append(kept)
        for old in root.findall(f"{{{ns}}}nextToken"):
            root.remove(old)
        if offset + size < len(pairs):
            ET.SubElement(root, f"{{{ns}}}nextToken").text = f"strict-{offset + size}-{page + 1}"
        out = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(out)))]
        start_response(status, headers)
        return [out]


# PutEvents takes at most 256 KB of entries, sized as EventBridge documents it:
# 14 bytes for a Time, plus the UTF-8 bytes of Source, DetailType, Detail and
# each Resource (moto checks the entry count and Detail's JSON, not the size).
PUT_EVENTS_LIMIT = 256 * 1024


def put_events_too_large(request):
    size = 0
    for entry in request.get("Entries", []):
        size += 14 if "Time" in entry else 0
        for key in ("Source", "DetailType", "Detail"):
            size += len(str(entry.get(key, "")).encode())
        size += sum(len(r.encode()) for r in entry.get("Resources", []))
    if size <= PUT_EVENTS_LIMIT:
        return None
    return {"__type": "ValidationException", "message": "Total size of the entries in the request is over the limit."}


def check_fault(rule):
    if rule.get("operation") != "TransactWriteItems":
        raise BadRule("operation must be TransactWriteItems")
    if not isinstance(rule.get("table"), str) or not rule["table"]:
        raise BadRule("table must name the table whose transactions fail")
    if rule.get("reason") not in CANCEL_REASONS:
        raise BadRule(f"reason must be one of {sorted(CANCEL_REASONS)}")
    has_count, has_fraction = "count" in rule, "fraction" in rule
    if has_count == has_fraction:
        raise BadRule("give exactly one of count (calls to fail) or fraction (of calls, 0 to 1)")
    if has_count and (not isinstance(rule["count"], int) or rule["count"] < 1):
        raise BadRule("count must be a whole number of at least 1")
    if has_fraction and (not isinstance(rule["fraction"], (int, float)) or not 0 < rule["fraction"] <= 1):
        raise BadRule("fraction must be more than 0 and at most 1")
    return {k: rule[k] for k in ("table", "reason", "count", "fraction") if k in rule}


def check_pages(rule):
    if rule.get("operation") != "DescribeInstances":
        raise BadRule("operation must be DescribeInstances")
    if not isinstance(rule.get("tag_value"), str) or not rule["tag_value"]:
        raise BadRule("tag_value must be the fleet tag's value whose listings are paged short")
    sizes = rule.get("page_sizes")
    if not isinstance(sizes, list) or not sizes or not all(isinstance(n, int) and 0 <= n <= 1000 for n in sizes):
        raise BadRule("page_sizes must be a non-empty list of page sizes from 0 to 1000 (0: an empty page)")
    if not any(sizes):
        raise BadRule("page_sizes must hold one size above 0, or no page would ever end the listing")
    return {"tag_value": rule["tag_value"], "page_sizes": sizes}


def answer(start_response, status, body, content_type="application/json"):
    out = json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(out)))])
    return [out]


def call(app, environ):
    """Runs the WSGI app; answers its status, headers and whole body."""
    captured = {}

    def start(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    body = b"".join(app(environ, start))
    return captured["status"], captured["headers"], body


class Serialised:
    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Read the whole response inside the lock: moto may produce it lazily.
            return list(self.app(environ, start_response))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialised(Strict(RpcV2Cbor(app))), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
