"""SSM's status-change events, as EventBridge carries them, for the simulator.

AWS emits an "EC2 Command Invocation Status-change Notification" for every
instance at every status change, and an "EC2 Command Status-change
Notification" for every change of a command's own status. The simulator emits
both; each event is matched against the EventPattern of the rules in
template.yaml (the function's EventBridgeRule events), and the events that
match are delivered, one at a time, to the subscribed Lambda invoke endpoints
(`cargo lambda watch` serves one at /2015-03-31/functions/<name>/invocations).
So a test proves the rule and the code together.
"""

import json
import queue
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone

import yaml

ACCOUNT, REGION = "123456789012", "us-east-1"
COMMAND_EVENT = "EC2 Command Status-change Notification"
INVOCATION_EVENT = "EC2 Command Invocation Status-change Notification"


class PatternError(Exception):
    pass


def load_patterns(template_path):
    """The EventPattern of every EventBridge rule of the template's functions,
    with `Ref: X` read as X (the simulator names documents by logical id), or
    as [X] when X is a list parameter."""
    with open(template_path) as f:
        template = yaml.safe_load(f)
    # A list parameter (the rollback alarms' names) stands for a list of values.
    lists = {name for name, p in (template.get("Parameters") or {}).items() if p.get("Type") == "CommaDelimitedList"}
    _resolve.lists = lists
    patterns = []
    for resource in template.get("Resources", {}).values():
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event in events.values():
            if event.get("Type") == "EventBridgeRule":
                pattern = _resolve(event["Properties"]["Pattern"])
                _check(pattern)
                patterns.append(pattern)
        if resource.get("Type") == "AWS::Events::Rule" and "EventPattern" in resource.get("Properties", {}):
            pattern = _resolve(resource["Properties"]["EventPattern"])
            _check(pattern)
            patterns.append(pattern)
    return patterns


def _resolve(value):
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return [value["Ref"]] if value["Ref"] in getattr(_resolve, "lists", ()) else value["Ref"]
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


OPERATORS = {"prefix", "suffix", "anything-but", "exists", "equals-ignore-case"}


def _check(pattern):
    """Refuses what this matcher does not implement, rather than match kindly."""
    for key, value in pattern.items():
        if isinstance(value, dict):
            _check(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and not set(item) <= OPERATORS:
                    raise PatternError(f"{key}: unsupported pattern operator {sorted(item)}")
        else:
            raise PatternError(f"{key}: a pattern value must be a list or an object")


def matches(pattern, event):
    """EventBridge's matching: every field of the pattern must match; a list
    matches when the event's value (or any of its values) equals one entry or
    meets one operator ([EventBridge User Guide, event patterns])."""
    for key, expected in pattern.items():
        present = isinstance(event, dict) and key in event
        actual = event.get(key) if isinstance(event, dict) else None
        if isinstance(expected, dict):
            if not present or not matches(expected, actual):
                return False
            continue
        values = actual if isinstance(actual, list) else [actual]
        if not any(_one(rule, value, present) for rule in expected for value in values):
            return False
    return True


def _one(rule, value, present):
    if not isinstance(rule, dict):
        return present and value == rule
    if "exists" in rule:
        return present == rule["exists"]
    if not present or not isinstance(value, str):
        return False
    if "prefix" in rule:
        return value.startswith(rule["prefix"])
    if "suffix" in rule:
        return value.endswith(rule["suffix"])
    if "equals-ignore-case" in rule:
        return value.lower() == rule["equals-ignore-case"].lower()
    excluded = rule["anything-but"]
    return value not in (excluded if isinstance(excluded, list) else [excluded])


def _iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(detail_type, command, status, instance_id=None):
    detail = {
        "command-id": command["CommandId"],
        "document-name": command["DocumentName"],
        "requested-date-time": _iso(command["RequestedDateTime"]),
        "status": status,
    }
    if instance_id:
        detail["instance-id"] = instance_id
        resources = [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"]
    else:
        detail["expire-after"] = _iso(command["RequestedDateTime"] + float(command["TimeoutSeconds"]))
        detail["parameters"] = command["Parameters"]
        resources = [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{i}" for i in sorted(command["invocations"])]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ssm",
        "account": ACCOUNT,
        "time": _iso(time.time()),
        "region": REGION,
        "resources": resources,
        "detail": detail,
    }


class EventBus:
    """Emits status changes, matches them against the template's rules and
    delivers the matches to subscribers, in order, on one thread."""

    def __init__(self, patterns):
        self.patterns = patterns
        self.lock = threading.Lock()
        self.subscriptions = []  # {"invoke_url", "comment_prefix"}
        self.emitted = {COMMAND_EVENT: 0, INVOCATION_EVENT: 0}
        self.matched = 0
        self.delivered = []  # {"command_id", "detail_type", "status", "answer"}
        # Deliveries queued so far: once `delivered` holds as many, none is in flight.
        self.queued = 0
        self.queue = queue.Queue()
        threading.Thread(target=self._deliver, daemon=True).start()

    def subscribe(self, body):
        """`{"invoke_url": ..., "comment_prefix"?: ...}`: deliver matching
        events (of commands whose comment starts so, when given; the tests
        share one simulator) to that Lambda invoke endpoint. `{"invoke_url":
        null}` removes every subscription."""
        url = body.get("invoke_url")
        prefix = body.get("comment_prefix", "")
        if url is not None and (not isinstance(url, str) or not url.startswith("http://127.0.0.1:")):
            raise ValueError("invoke_url must be a local Lambda invoke endpoint, http://127.0.0.1:<port>/...")
        if not isinstance(prefix, str):
            raise ValueError("comment_prefix must be a string")
        with self.lock:
            if url is None:
                self.subscriptions.clear()
            else:
                self.subscriptions.append({"invoke_url": url, "comment_prefix": prefix})

    def reset(self):
        with self.lock:
            self.subscriptions.clear()
            self.emitted = {COMMAND_EVENT: 0, INVOCATION_EVENT: 0}
            self.matched = 0
            self.delivered.clear()
            self.queued = 0

    def report(self):
        with self.lock:
            return {
                "emitted": dict(self.emitted),
                "matched": self.matched,
                "delivered": list(self.delivered),
                "pending": self.queue.qsize(),
                "queued": self.queued,
            }

    def publish(self, command, detail_type, status, instance_id=None):
        """One status change. Called with the simulator's lock held."""
        body = event(detail_type, command, status, instance_id)
        with self.lock:
            self.emitted[detail_type] += 1
            if not any(matches(p, body) for p in self.patterns):
                return
            self.matched += 1
            for sub in self.subscriptions:
                if command["Comment"].startswith(sub["comment_prefix"]):
                    self.queued += 1
                    self.queue.put((sub["invoke_url"], body))

    def _deliver(self):
        while True:
            url, body = self.queue.get()
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = response.status
            except Exception as e:  # recorded, not raised: EventBridge retries, the schedule is the backstop
                answer = repr(e)
            with self.lock:
                self.delivered.append({
                    "command_id": body["detail"]["command-id"],
                    "detail_type": body["detail-type"],
                    "status": body["detail"]["status"],
                    "answer": answer,
                })
