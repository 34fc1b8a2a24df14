#!/usr/bin/env python3
"""A small SSM Run Command simulator for flakefleet's tests and demo.

moto 5.2.5 lacks ListCommandInvocations and CancelCommand, fails a tag target
that matches nothing and reports every invocation as Success at once. This
server speaks the SSM JSON 1.1 protocol for the five Run Command calls
flakefleet uses, resolves targets against the EC2 instances in moto, and lets
tests script each instance's outcome. Point the SDK at it with
AWS_ENDPOINT_URL_SSM. See dev/README.md for what it models and what it does not.
"""

import argparse
import base64
import json
import re
import signal
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import yaml

from ssm_events import COMMAND_EVENT, INVOCATION_EVENT, EventBus, load_patterns
from ssm_hosts import FakeHosts
from ssm_output import OutputUploader
from event_pipes import PipeRunner

PAGE = 50
# How long a cancelled invocation that had not started shows Cancelling
# before it is Cancelled (CancelCommand only asks; the agent answers later).
CANCEL_SECONDS = 1.0
STDOUT_MAX, STDERR_MAX, DETAIL_MAX = 24000, 8000, 2500
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}

# outcome -> (Status, StatusDetails, default exit code, counts against MaxErrors)
OUTCOMES = {
    "success": ("Success", "Success", 0, False),
    "failed": ("Failed", "Failed", 1, True),
    "execution_timed_out": ("TimedOut", "Execution Timed Out", -1, True),
    "delivery_timed_out": ("TimedOut", "Delivery Timed Out", -1, False),
    "undeliverable": ("Failed", "Undeliverable", -1, False),
    "access_denied": ("Failed", "Access Denied", -1, False),
    "terminated": ("Failed", "Terminated", -1, False),
}


class SsmError(Exception):
    def __init__(self, code, message, status=400, took_effect=False):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        # A scripted fault that lets the call act first: its answer is lost.
        self.took_effect = took_effect


OPERATIONS = (
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
    "CancelCommand",
    "DescribeInstanceInformation",
    "DescribeDocument",
    "UpdateDocument",
)
PING_STATUSES = ("Online", "ConnectionLost", "Inactive")
# EC2 states in which SendCommand accepts a registered node (its invocation then
# waits for an agent that is not there); any other state is InvalidInstanceId.
ACCEPTED_STATES = {"pending", "running", "stopping", "stopped"}
DEFAULT_AGENT_VERSION = "3.3.987.0"
# Scriptable errors, with the status and message SSM answers them with.
FAULTS = {
    "ThrottlingException": (400, "Rate exceeded"),
    "InternalServerError": (500, "An internal error occurred"),
    "InvalidInstanceId": (400, "Instances not in a valid state for account"),
}


class Simulator:
    def __init__(self, ec2, documents, registration_delay, bus, hosts, uploader=None):
        self.ec2 = ec2
        self.bus = bus
        # Instances scripted as fake hosts run the document's own script;
        # every other invocation's outcome comes from the rules.
        self.hosts = hosts
        self.emitted = {}  # command id -> the statuses last published for it
        # name -> {"list": [{"content", "version_name"}], "default": "<number>"}: version N is list[N-1].
        self.versions = {
            name: {"list": [{"content": content, "version_name": version_name}], "default": "1"}
            for name, (content, version_name) in documents.items()
        }
        self.documents = {name: content for name, (content, _) in documents.items()}
        self.uploader = uploader  # fake hosts' output to CloudWatch Logs (dev/ssm_output.py)
        self.lock = threading.Lock()
        self.commands = []  # newest last
        self.sequence = 0  # each command's place in time, for stable paging
        self.rules = []
        self.faults = []
        # The managed-node registry. A running instance registers by itself
        # once `registration_delay` seconds have passed since its launch, as
        # the agent does on a fresh host; `agents` holds what tests set.
        self.default_delay = registration_delay
        self.registration_delay = registration_delay
        self.agents = {}  # instance id -> {"PingStatus", "AgentVersion"}
        self.agents_on_send = {}  # instance id -> agent, applied when a send names it

    # ---- control API -------------------------------------------------------
    def add_rules(self, rules):
        for rule in rules:
            if rule.get("outcome", "success") not in OUTCOMES:
                raise SsmError("InvalidRule", f"outcome must be one of {sorted(OUTCOMES)}")
            start, end = float(rule.get("start_delay_seconds", 0)), float(rule.get("delay_seconds", 0))
            if start < 0 or end < start:
                raise SsmError("InvalidRule", "start_delay_seconds must be at least 0 and at most delay_seconds")
            limit = rule.get("execution_timeout_seconds", 1)
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 < limit <= 172800:
                raise SsmError("InvalidRule", "execution_timeout_seconds must be a number of seconds, more than 0")
        with self.lock:
            self.rules.extend(rules)
            return len(self.rules)

    def reset(self):
        with self.lock:
            self.commands.clear()
            self.rules.clear()
            self.faults.clear()
            self.agents.clear()
            self.agents_on_send.clear()
            self.emitted.clear()
            self.registration_delay = self.default_delay
        self.bus.reset()
        self.hosts.reset()

    def set_agents(self, body):
        """`{"instance_id" | "instance_ids", "ping_status", "agent_version"?, "on"?}`:
        registers the instances' agents with that status (`NotRegistered`
        removes them). With `"on": "SendCommand"`, the change happens as the
        next SendCommand naming the instance arrives: an agent that goes away
        between a caller's check and its send. `{"registration_delay_seconds": N}`
        sets how long a new instance takes to register by itself."""
        if "registration_delay_seconds" in body:
            delay = body["registration_delay_seconds"]
            if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
                raise SsmError("InvalidRule", "registration_delay_seconds must be a number of at least 0")
            with self.lock:
                self.registration_delay = float(delay)
            if set(body) == {"registration_delay_seconds"}:
                return 0
        ids = body.get("instance_ids", [body["instance_id"]] if "instance_id" in body else None)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.startswith("i-") for i in ids):
            raise SsmError("InvalidRule", "give instance_id, or instance_ids as a list of instance ids")
        status = body.get("ping_status")
        if status not in PING_STATUSES + ("NotRegistered",):
            raise SsmError("InvalidRule", f"ping_status must be one of {list(PING_STATUSES) + ['NotRegistered']}")
        version = body.get("agent_version", DEFAULT_AGENT_VERSION)
        if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+){1,3}", version):
            raise SsmError("InvalidRule", "agent_version must look like 3.3.987.0")
        when = body.get("on")
        if when not in (None, "SendCommand"):
            raise SsmError("InvalidRule", "on must be SendCommand, or left out")
        agent = None if status == "NotRegistered" else {"PingStatus": status, "AgentVersion": version}
        with self.lock:
            for instance_id in ids:
                if when:
                    self.agents_on_send[instance_id] = agent
                else:
                    self._set_agent(instance_id, agent)
        return len(ids)

    def _set_agent(self, instance_id, agent):
        """Records an agent change. One that stops being Online never gets
        the invocations it had not started (they end Undeliverable, which AWS
        documents as "couldn't be delivered"); those it had started run on
        on the host and report nothing ("In Progress: ... sent to the managed
        node but hasn't reached a terminal state") until the agent is back,
        when they report how they ended. Lock held."""
        self.agents[instance_id] = agent
        now = time.time()
        online = agent is not None and agent["PingStatus"] == "Online"
        for command in self.commands:
            inv = command["invocations"].get(instance_id)
            if not inv or inv["lost_at"] is not None:
                continue
            if online:
                inv["silent_since"] = None
                continue
            status = self._state(command, instance_id, now)["status"]
            if status in TERMINAL or inv.get("silent_since") is not None:
                continue
            if status in ("InProgress", "Cancelling"):
                inv["silent_since"] = now
            else:
                inv["lost_at"] = now

    def watch_statuses(self, interval):
        """Publishes status changes as AWS does, whether or not anyone reads."""
        while True:
            time.sleep(interval)
            self.publish_changes()

    def publish_changes(self):
        now = time.time()
        with self.lock:
            for command in self.commands:
                seen = self.emitted.setdefault(command["CommandId"], {"command": None, "invocations": {}})
                if seen.get("done"):
                    continue
                for instance_id in sorted(command["invocations"]):
                    status = self._state(command, instance_id, now)["status"]
                    if seen["invocations"].get(instance_id) != status:
                        seen["invocations"][instance_id] = status
                        self.bus.publish(command, INVOCATION_EVENT, status, instance_id)
                status = self._command_view(command, now)["Status"]
                if seen["command"] != status:
                    seen["command"] = status
                    self.bus.publish(command, COMMAND_EVENT, status)
                seen["done"] = status in TERMINAL

    def _nodes(self, instances):
        """The managed node of each EC2 instance (None: not registered). An
        instance tests have not scripted registers Online `registration_delay`
        seconds after its launch while it runs; a terminated one stops pinging."""
        now = time.time()
        nodes = {}
        for instance in instances:
            instance_id, state = instance["InstanceId"], instance["State"]["Name"]
            if instance_id in self.agents:
                agent = self.agents[instance_id]
            elif state == "running" and now - instance["LaunchTime"].timestamp() >= self.registration_delay:
                agent = {"PingStatus": "Online", "AgentVersion": DEFAULT_AGENT_VERSION}
                if self.hosts.launch(instance_id):
                    self.boot(instance_id)
            else:
                agent = None
            if agent and state not in ("running",):
                agent = dict(agent, PingStatus="ConnectionLost" if state != "terminated" else "Inactive")
            nodes[instance_id] = (state, agent)
        return nodes

    def boot(self, instance_id):
        """Boots a fake host: its user data from EC2 (moto), run as
        amazon-init runs a `#!` script. Other user data is not modelled."""
        answer = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        encoded = answer.get("UserData", {}).get("Value")
        user_data = base64.b64decode(encoded) if encoded else b""
        if user_data.startswith(b"#!"):
            self.hosts.boot(instance_id, user_data)

    def _instances(self, filters=None, ids=None):
        """EC2 instances from moto, matching the filters; ids that do not
        exist are left out (moto refuses a whole list for one unknown id, so
        then each is asked alone)."""
        try:
            return self._describe(InstanceIds=ids or [], Filters=filters or [])
        except self.ec2.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "InvalidInstanceID.NotFound":
                raise
            if len(ids or []) <= 1:
                return []
        found = []
        for instance_id in ids:
            found.extend(self._instances(filters, [instance_id]))
        return found

    def _describe(self, **kwargs):
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate(**kwargs):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

    def add_fault(self, rule):
        """`{"operation": ..., "error": ..., "count": N, "instance_id"?: ...,
        "took_effect"?: bool}`: the next N calls of the operation (naming that
        instance, when given) fail with the error, having done nothing; with
        `took_effect`, having done what they asked (the answer was lost).
        `{"operation": ..., "stall_seconds": S, "count": N}` instead: the next
        N calls wait S seconds, then do what they asked (a caller killed
        meanwhile never hears)."""
        if rule.get("operation") not in OPERATIONS:
            raise SsmError("InvalidRule", f"operation must be one of {sorted(OPERATIONS)}")
        stall = rule.get("stall_seconds")
        if stall is not None:
            if not isinstance(stall, (int, float)) or isinstance(stall, bool) or not 0 < stall <= 300:
                raise SsmError("InvalidRule", "stall_seconds must be a number above 0 and at most 300")
            if "error" in rule:
                raise SsmError("InvalidRule", "a fault either stalls or fails, not both")
        elif rule.get("error") not in FAULTS:
            raise SsmError("InvalidRule", f"error must be one of {sorted(FAULTS)}")
        count = rule.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise SsmError("InvalidRule", "count must be a whole number of at least 1")
        if "instance_id" in rule and not isinstance(rule["instance_id"], str):
            raise SsmError("InvalidRule", "instance_id must be an instance id")
        if not isinstance(rule.get("took_effect", False), bool):
            raise SsmError("InvalidRule", "took_effect must be true or false")
        with self.lock:
            self.faults.append(dict(rule))

    def fault_for(self, operation, body):
        """The scripted error this call meets, if any (and one fewer left)."""
        named = set(body.get("InstanceIds") or []) | {body.get("InstanceId")}
        with self.lock:
            for fault in self.faults:
                if fault["operation"] != operation or fault["count"] < 1:
                    continue
                if "instance_id" in fault and fault["instance_id"] not in named:
                    continue
                fault["count"] -= 1
                if "stall_seconds" in fault:
                    return float(fault["stall_seconds"])
                status, message = FAULTS[fault["error"]]
                return SsmError(fault["error"], message, status, fault.get("took_effect", False))
        return None

    def _outcome_for(self, instance_id, parameters):
        flakeref = " ".join(parameters.get("flakeref", []))
        for rule in self.rules:
            if "instance_id" in rule and rule["instance_id"] != instance_id:
                continue
            if "flakeref_contains" in rule and rule["flakeref_contains"] not in flakeref:
                continue
            return rule
        return {"outcome": "success"}

    # ---- target resolution against moto -----------------------------------
    def _resolve(self, body):
        ids, targets = body.get("InstanceIds"), body.get("Targets")
        if bool(ids) == bool(targets):
            raise SsmError("InvalidParameters", "give exactly one of InstanceIds or Targets")
        if ids:
            if len(ids) > 50:
                raise SsmError("ValidationException", "InstanceIds holds at most 50 ids")
            with self.lock:
                for instance_id in ids:
                    if instance_id in self.agents_on_send:
                        self._set_agent(instance_id, self.agents_on_send.pop(instance_id))
            nodes = self._nodes(self._instances(ids=list(ids)))
            # As SSM: one id that is not a registered node in a valid state
            # refuses the whole request, and no command exists.
            invalid = [i for i in ids if not _sendable(*nodes.get(i, (None, None)))]
            if invalid:
                raise SsmError("InvalidInstanceId", f"Instances {invalid} not in a valid state for account")
            return list(ids)
        if len(targets) > 5:
            raise SsmError("ValidationException", "Targets holds at most 5 keys")
        filters = []
        for target in targets:
            key = target.get("Key", "")
            if not key.startswith("tag:"):
                raise SsmError("InvalidParameters", "the simulator resolves only tag:<name> targets")
            filters.append({"Name": key, "Values": target.get("Values", [])})
        # Tag targets reach managed nodes only: an instance without a
        # registered agent is skipped, not an error.
        nodes = self._nodes(self._instances(filters=filters + [{"Name": "instance-state-name", "Values": ["running"]}]))
        return sorted(i for i, (_, agent) in nodes.items() if agent is not None)

    @staticmethod
    def _run_command(document):
        """The document's first step's runCommand lines."""
        return document["mainSteps"][0]["inputs"]["runCommand"]

    def _version(self, name, asked):
        """A document's version as SendCommand names it (`DocumentVersion`:
        a number, `$DEFAULT` (also when absent) or `$LATEST`): its number and content."""
        versions = self.versions.get(name)
        if versions is None:
            raise SsmError("InvalidDocument", f"Document {name} does not exist")
        number = {None: versions["default"], "$DEFAULT": versions["default"], "$LATEST": str(len(versions["list"]))}.get(
            asked, asked)
        if not isinstance(number, str) or not number.isdigit() or not 1 <= int(number) <= len(versions["list"]):
            raise SsmError("InvalidDocumentVersion", f"The document version {asked!r} is not valid or does not exist")
        return number, versions["list"][int(number) - 1]["content"]

    def _uploader_for(self, output, command_id, instance_id, document_name, document):
        """What the host's agent does with a run's output when the command
        asks for CloudWatch output: uploads it (dev/ssm_output.py)."""
        if not output["CloudWatchOutputEnabled"] or self.uploader is None:
            return None
        # Without a group name SSM names one after the document.
        group = output["CloudWatchLogGroupName"] or f"/aws/ssm/{document_name}"
        step = document["mainSteps"][0]["name"]

        def upload(run):
            result = self.uploader.upload(self.hosts.policy(instance_id), group, command_id, instance_id, step,
                                          run.full_stdout, run.full_stderr)
            self.hosts.record_upload(instance_id, command_id, result)

        return upload

    @staticmethod
    def _step_timeout(document, rule):
        """How long the agent lets the step's script run before it kills it:
        the step's `timeoutSeconds` (3600 when absent, the agent's default for
        aws:runShellScript), or a test's `execution_timeout_seconds` rule."""
        if "execution_timeout_seconds" in rule:
            return float(rule["execution_timeout_seconds"])
        inputs = document["mainSteps"][0]["inputs"]
        return float(inputs.get("timeoutSeconds", 3600))

    @staticmethod
    def _with_defaults(document, parameters):
        declared = document.get("parameters", {})
        filled = {name: [str(spec["default"])] for name, spec in declared.items() if "default" in spec}
        filled.update(parameters)
        return filled

    @staticmethod
    def _validate_parameters(document_name, document, parameters):
        declared = document.get("parameters", {})
        for name in parameters:
            if name not in declared:
                raise SsmError("InvalidParameters", f"Document {document_name} has no parameter {name}")
        for name, spec in declared.items():
            values = parameters.get(name)
            if values is None:
                if "default" not in spec:
                    raise SsmError("InvalidParameters", f"parameter {name} is required")
                continue
            for value in values:
                check_parameter(name, spec, value)

    # ---- SSM operations ----------------------------------------------------
    def SendCommand(self, body):
        name = body.get("DocumentName") or ""
        parameters = body.get("Parameters", {})
        comment = body.get("Comment", "")
        if len(comment) > 100:
            raise SsmError("ValidationException", "Comment is at most 100 characters")
        output = _cloudwatch_output(body.get("CloudWatchOutputConfig"))
        with self.lock:
            version, document = self._version(name, body.get("DocumentVersion"))
        self._validate_parameters(name, document, parameters)
        instance_ids = self._resolve(body)
        nodes = self._nodes(self._instances(ids=instance_ids)) if instance_ids else {}
        now = time.time()
        command_id = str(uuid.uuid4())
        with self.lock:
            invocations = {}
            for instance_id in instance_ids:
                rule = self._outcome_for(instance_id, parameters)
                agent = nodes.get(instance_id, (None, None))[1]
                # Accepted for a node whose agent is not there: never delivered.
                lost = None if agent and agent["PingStatus"] == "Online" else now
                invocations[instance_id] = {"rule": rule, "cancelled_at": None, "lost_at": lost}
                if lost is None and self.hosts.has(instance_id):
                    invocations[instance_id]["run"] = self.hosts.run(
                        instance_id,
                        command_id,
                        self._run_command(document),
                        self._with_defaults(document, parameters),
                        agent["AgentVersion"],
                        timeout_seconds=self._step_timeout(document, rule),
                        on_done=self._uploader_for(output, command_id, instance_id, name, document),
                    )
            self.sequence += 1
            command = {
                "seq": self.sequence,
                "CommandId": command_id,
                "DocumentName": name,
                "DocumentVersion": version,
                "Comment": comment,
                "Parameters": parameters,
                "InstanceIds": body.get("InstanceIds", []),
                "Targets": body.get("Targets", []),
                "RequestedDateTime": now,
                "MaxConcurrency": body.get("MaxConcurrency", "50"),
                "MaxErrors": body.get("MaxErrors", "0"),
                "TimeoutSeconds": body.get("TimeoutSeconds", 3600),
                "CloudWatchOutputConfig": output,
                "invocations": invocations,
            }
            self.commands.append(command)
            return {"Command": self._command_view(command, now)}

    def DescribeDocument(self, body):
        """One version of a document, by `DocumentVersion` or `VersionName`
        (the default version when neither is given), as the API reference
        answers it; an unknown name is InvalidDocument, an unknown version
        InvalidDocumentVersion."""
        name = body.get("Name") or ""
        with self.lock:
            versions = self.versions.get(name)
            if versions is None:
                raise SsmError("InvalidDocument", f"Document {name} does not exist")
            if body.get("VersionName") is not None:
                numbers = [str(i + 1) for i, v in enumerate(versions["list"]) if v["version_name"] == body["VersionName"]]
                if body.get("DocumentVersion") is not None and numbers and body["DocumentVersion"] not in numbers:
                    numbers = []
                if not numbers:
                    raise SsmError("InvalidDocumentVersion", f"Document {name} has no version named {body['VersionName']!r}")
                number = numbers[0]
            else:
                number, _ = self._version(name, body.get("DocumentVersion"))
            entry = versions["list"][int(number) - 1]
            document = {
                "Name": name, "DocumentVersion": number, "LatestVersion": str(len(versions["list"])),
                "DefaultVersion": versions["default"], "Status": "Active", "DocumentType": "Command",
                "DocumentFormat": "YAML", "SchemaVersion": str(entry["content"].get("schemaVersion", "2.2")),
            }
            if entry["version_name"] is not None:
                document["VersionName"] = entry["version_name"]
            return {"Document": document}

    def UpdateDocument(self, body):
        """A new version of a document (`DocumentVersion` must be `$LATEST`,
        and a `VersionName` may not be one the document has); as
        CloudFormation's UpdateMethod NewVersion does, it becomes the default.
        Commands sent before keep running the version they named."""
        name = body.get("Name") or ""
        if body.get("DocumentVersion", "$LATEST") != "$LATEST":
            raise SsmError("InvalidDocumentVersion", "UpdateDocument takes DocumentVersion $LATEST")
        try:
            content = yaml.safe_load(body.get("Content") or "")
        except yaml.YAMLError as e:
            raise SsmError("InvalidDocumentContent", f"the content is not YAML or JSON: {e}") from e
        if not isinstance(content, dict) or not content.get("mainSteps"):
            raise SsmError("InvalidDocumentContent", "a Command document has mainSteps")
        with self.lock:
            versions = self.versions.get(name)
            if versions is None:
                raise SsmError("InvalidDocument", f"Document {name} does not exist")
            version_name = body.get("VersionName")
            if version_name is not None and any(v["version_name"] == version_name for v in versions["list"]):
                raise SsmError("DuplicateDocumentVersionName", f"Document {name} has a version named {version_name!r}")
            versions["list"].append({"content": content, "version_name": version_name})
            versions["default"] = str(len(versions["list"]))
            self.documents[name] = content
            return {"DocumentDescription": {"Name": name, "DocumentVersion": versions["default"],
                                            "LatestVersion": versions["default"], "Status": "Active"}}

    def ListCommands(self, body):
        now = time.time()
        with self.lock:
            commands = list(reversed(self.commands))
            if body.get("CommandId"):
                commands = [c for c in commands if c["CommandId"] == body["CommandId"]]
                if not commands:
                    raise SsmError("InvalidCommandId", "no such command")
            if body.get("InstanceId"):
                commands = [c for c in commands if body["InstanceId"] in c["invocations"]]
            for f in body.get("Filters", []):
                commands = [c for c in commands if self._filter(c, f["key"], f["value"], now)]
            page, token = self._page(commands, body, order=lambda c: (-c["seq"],))
            return {"Commands": [self._command_view(c, now) for c in page], **token}

    def ListCommandInvocations(self, body):
        now = time.time()
        with self.lock:
            commands = self.commands
            if body.get("CommandId"):
                commands = [c for c in commands if c["CommandId"] == body["CommandId"]]
                if not commands:
                    raise SsmError("InvalidCommandId", "no such command")
            rows = [
                (c, instance_id)
                for c in reversed(commands)
                for instance_id in sorted(c["invocations"])
                if not body.get("InstanceId") or body["InstanceId"] == instance_id
            ]
            page, token = self._page(rows, body, order=lambda row: (-row[0]["seq"], row[1]))
            return {
                "CommandInvocations": [self._invocation_view(c, i, now, bool(body.get("Details"))) for c, i in page],
                **token,
            }

    def GetCommandInvocation(self, body):
        now = time.time()
        with self.lock:
            for c in self.commands:
                if c["CommandId"] == body.get("CommandId") and body.get("InstanceId") in c["invocations"]:
                    state = self._state(c, body["InstanceId"], now)
                    return {
                        "CommandId": c["CommandId"],
                        "InstanceId": body["InstanceId"],
                        "Comment": c["Comment"],
                        "DocumentName": c["DocumentName"],
                        "PluginName": "applyNixos",
                        "ResponseCode": state["code"],
                        "Status": state["status"],
                        "StatusDetails": state["detail"],
                        # As SSM: the first characters, not the last.
                        "StandardOutputContent": state["stdout"][:STDOUT_MAX],
                        "StandardErrorContent": state["stderr"][:STDERR_MAX],
                    }
            raise SsmError("InvocationDoesNotExist", "no such invocation")

    def DescribeInstanceInformation(self, body):
        size = int(body.get("MaxResults", 50))
        if not 5 <= size <= 50:
            raise SsmError("ValidationException", "MaxResults must be 5 to 50")
        if body.get("InstanceInformationFilterList") and body.get("Filters"):
            raise SsmError("InvalidFilter", "give InstanceInformationFilterList or Filters, not both")
        filters = [
            (f.get("Key", ""), f.get("Values", [])) for f in body.get("Filters", [])
        ] + [(f.get("key", ""), f.get("valueSet", [])) for f in body.get("InstanceInformationFilterList", [])]
        ids, ec2_filters, checks = None, [], []
        for key, values in filters:
            if not values or len(values) > 100:
                raise SsmError("InvalidInstanceInformationFilterValue", f"filter {key} takes 1 to 100 values")
            if key == "InstanceIds":
                ids = list(values)
            elif key.startswith("tag:") or key == "tag-key":
                ec2_filters.append({"Name": key, "Values": list(values)})
            elif key in ("PingStatus", "AgentVersion"):
                checks.append((key, set(values)))
            elif key == "ResourceType":
                checks.append(("ResourceType", set(values)))
            else:
                raise SsmError("InvalidFilterKey", f"the simulator does not filter on {key}")
        if ec2_filters and (ids is not None or checks):
            raise SsmError("InvalidFilter", "tag filters can't be combined with other filter types")
        instances = self._instances(filters=ec2_filters, ids=ids)
        unknown = sorted(set(ids or []) - {i["InstanceId"] for i in instances})
        if unknown:
            raise SsmError("InvalidInstanceId", f"Instances {unknown} not found")
        nodes = self._nodes(instances)
        with self.lock:
            listed = []
            for instance_id in sorted(nodes):
                state, agent = nodes[instance_id]
                # As SSM: nothing about nodes that are stopped or terminated
                # (nor, stricter, those on their way there).
                if agent is None or state in ("stopping", "stopped", "shutting-down", "terminated"):
                    continue
                view = {
                    "InstanceId": instance_id,
                    "PingStatus": agent["PingStatus"],
                    "AgentVersion": agent["AgentVersion"],
                    "LastPingDateTime": time.time(),
                    "PlatformType": "Linux",
                    "PlatformName": "NixOS",
                    "ResourceType": "EC2Instance",
                    "IsLatestVersion": agent["AgentVersion"] == DEFAULT_AGENT_VERSION,
                }
                if all(view[key] in values for key, values in checks):
                    listed.append(view)
            page, token = self._page(listed, dict(body, MaxResults=size))
            return {"InstanceInformationList": page, **token}

    def CancelCommand(self, body):
        """As AWS documents it: a request, with no guarantee. An invocation
        not yet started shows Cancelling, then Cancelled; one already running
        shows Cancelling and its script runs on to its own end, whose outcome
        it then reports (the stricter reading of "no guarantee that the
        command will be terminated and the underlying process stopped")."""
        command_id = body.get("CommandId") or ""
        if len(command_id) != 36:
            raise SsmError("ValidationException", "CommandId has a fixed length of 36")
        named = body.get("InstanceIds") or []
        if len(named) > 50:
            raise SsmError("ValidationException", "InstanceIds holds at most 50 ids")
        now = time.time()
        with self.lock:
            command = next((c for c in self.commands if c["CommandId"] == command_id), None)
            if command is None:
                raise SsmError("InvalidCommandId", "The specified command ID isn't valid")
            unknown = [i for i in named if i not in command["invocations"]]
            if unknown:
                raise SsmError("InvalidInstanceId", f"Instances {unknown} are not targets of the command")
            for instance_id, inv in command["invocations"].items():
                if named and instance_id not in named:
                    continue
                if inv["cancelled_at"] is None and self._state(command, instance_id, now)["status"] not in TERMINAL:
                    inv["cancelled_at"] = now
                    # A running script: its process group is killed, as the agent does
                    # (not while the agent is away: the request waits for it).
                    if inv.get("run") is not None and inv.get("silent_since") is None:
                        inv["run"].kill("cancel")
            return {}

    # ---- views -------------------------------------------------------------
    def _state(self, command, instance_id, now):
        inv = command["invocations"][instance_id]
        rule = inv["rule"]
        if inv.get("lost_at") is not None:
            return {"status": "Failed", "detail": "Undeliverable", "code": -1, "stdout": "", "stderr": ""}
        if inv.get("silent_since") is not None:
            # Started, its agent away: whatever the script did since is not reported yet.
            status = "Cancelling" if inv["cancelled_at"] is not None else "InProgress"
            return {"status": status, "detail": status.replace("InProgress", "In Progress"), "code": -1,
                    "stdout": "", "stderr": ""}
        run = inv.get("run")
        if run is not None:
            # The script's own exit decides, as the agent reports it.
            if not run.done:
                status = "Cancelling" if inv["cancelled_at"] is not None else "InProgress"
                return {"status": status, "detail": status.replace("InProgress", "In Progress"), "code": -1,
                        "stdout": "", "stderr": ""}
            # Killed by the agent (its group SIGKILLed), or a script that exited
            # 137 (the code of a SIGKILL): the agent reports Cancelled when it
            # cancelled it, else TimedOut (agent/executers, agent/contracts).
            killed = run.ended_by is not None or run.exit_code in (137, -signal.SIGKILL)
            if killed and (run.ended_by == "cancel" or inv["cancelled_at"] is not None):
                return {"status": "Cancelled", "detail": "Cancelled", "code": -1, "stdout": run.stdout, "stderr": run.stderr}
            if killed:
                return {"status": "TimedOut", "detail": "Execution Timed Out", "code": -1, "stdout": run.stdout,
                        "stderr": run.stderr}
            status = "Success" if run.exit_code == 0 else "Failed"
            return {"status": status, "detail": status, "code": run.exit_code, "stdout": run.stdout, "stderr": run.stderr}
        status, detail, code, _ = OUTCOMES[rule.get("outcome", "success")]
        elapsed = now - command["RequestedDateTime"]
        started = float(rule.get("start_delay_seconds", 0))
        cancelled_at = inv["cancelled_at"]
        if cancelled_at is not None and cancelled_at - command["RequestedDateTime"] < started:
            # Cancelled before the agent started it: it never runs.
            if now - cancelled_at < CANCEL_SECONDS:
                return {"status": "Cancelling", "detail": "Cancelling", "code": -1, "stdout": "", "stderr": ""}
            return {"status": "Cancelled", "detail": "Cancelled", "code": -1, "stdout": "", "stderr": ""}
        if elapsed < float(rule.get("delay_seconds", 0)):
            if cancelled_at is not None:
                return {"status": "Cancelling", "detail": "Cancelling", "code": -1, "stdout": "", "stderr": ""}
            if elapsed < started or rule.get("outcome") in ("undeliverable", "delivery_timed_out"):
                return {"status": "Pending", "detail": "Pending", "code": -1, "stdout": "", "stderr": ""}
            return {"status": "InProgress", "detail": "In Progress", "code": -1, "stdout": "", "stderr": ""}
        flakeref = " ".join(command["Parameters"].get("flakeref", []))
        stdout = rule.get("stdout", f"flakefleet: applied {flakeref}" if status == "Success" else "")
        stderr = rule.get("stderr", "" if status == "Success" else f"simulated {detail}")
        return {"status": status, "detail": detail, "code": int(rule.get("exit_code", code)), "stdout": stdout, "stderr": stderr}

    def _command_view(self, command, now):
        states = [self._state(command, i, now) for i in command["invocations"]]
        errors = sum(1 for i in command["invocations"] if self._counts_as_error(command, i, now))
        done = [s for s in states if s["status"] in TERMINAL]
        if not states:
            status, detail = "Success", "No Instances In Tag"
        elif len(done) < len(states) and any(s["status"] == "Cancelling" for s in states):
            status, detail = "Cancelling", "Cancelling"
        elif len(done) < len(states):
            status, detail = "InProgress", "In Progress"
        elif errors > _limit(command["MaxErrors"], len(states)):
            status, detail = "Failed", "Failed"
        elif all(s["status"] == "Success" for s in states):
            status, detail = "Success", "Success"
        elif all(s["status"] == "Cancelled" for s in states):
            status, detail = "Cancelled", "Cancelled"
        else:
            # Undeliverable and delivery timeouts do not count as errors:
            # SSM calls such a command a Success with details Incomplete.
            status, detail = "Success", "Incomplete"
        view = {k: v for k, v in command.items() if k != "invocations"}
        view.update(
            Status=status,
            StatusDetails=detail,
            TargetCount=len(states),
            CompletedCount=len(done),
            ErrorCount=errors,
            DeliveryTimedOutCount=sum(1 for s in states if s["detail"] == "Delivery Timed Out"),
        )
        return view

    def _counts_as_error(self, command, instance_id, now):
        state = self._state(command, instance_id, now)
        return state["detail"] in ("Failed", "Execution Timed Out")

    def _invocation_view(self, command, instance_id, now, details):
        state = self._state(command, instance_id, now)
        view = {
            "CommandId": command["CommandId"],
            "InstanceId": instance_id,
            "Comment": command["Comment"],
            "DocumentName": command["DocumentName"],
            "DocumentVersion": command["DocumentVersion"],
            "RequestedDateTime": command["RequestedDateTime"],
            "Status": state["status"],
            "StatusDetails": state["detail"],
        }
        if details:
            output = (state["stdout"] + ("\n" + state["stderr"] if state["stderr"] else ""))[:DETAIL_MAX]
            view["CommandPlugins"] = [
                {
                    "Name": "applyNixos",
                    "Status": state["status"],
                    "StatusDetails": state["detail"],
                    "ResponseCode": state["code"],
                    "Output": output,
                }
            ]
        return view

    def _filter(self, command, key, value, now):
        if key == "DocumentName":
            return command["DocumentName"] == value
        if key == "Status":
            return self._command_view(command, now)["Status"] == value
        if key in ("InvokedAfter", "InvokedBefore"):
            at = _parse_time(value)
            return command["RequestedDateTime"] >= at if key == "InvokedAfter" else command["RequestedDateTime"] <= at
        raise SsmError("InvalidFilterKey", f"the simulator does not filter on {key}")

    @staticmethod
    def _page(rows, body, order=None):
        """One page of `rows`. With `order` (a key that grows along the rows,
        newest command first), the token names the last row answered and the
        next page starts after it: commands created between two pages never
        shift it, so a listing repeats and skips no row, as AWS's opaque
        tokens behave. Without, an offset (for lists that do not grow)."""
        size = int(body.get("MaxResults", PAGE))
        if not 1 <= size <= PAGE:
            raise SsmError("ValidationException", f"MaxResults must be 1 to {PAGE}")
        raw = body.get("NextToken") or ""
        if order is None:
            start = int(raw or 0)
            page = rows[start : start + size]
            token = {"NextToken": str(start + size)} if start + size < len(rows) else {}
            return page, token
        if raw:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(raw.encode())))
            except (ValueError, TypeError) as e:
                raise SsmError("InvalidNextToken", "The specified token isn't valid.") from e
            rows = [r for r in rows if order(r) > after]
        page = rows[:size]
        if len(rows) <= size:
            return page, {}
        last = json.dumps(list(order(page[-1]))).encode()
        return page, {"NextToken": base64.urlsafe_b64encode(last).decode()}


def check_parameter(name, spec, value):
    """SendCommand's check of one parameter value against its declaration.
    re.search, as SSM's own matcher reads the pattern (a `$` that also matches
    before one trailing newline); tests/it/document.rs compares it with the
    Rust validator and the host script's bash check."""
    if "allowedPattern" in spec and not re.search(spec["allowedPattern"], value):
        raise SsmError("InvalidParameters", f"parameter {name} fails its allowedPattern")
    if "allowedValues" in spec and value not in spec["allowedValues"]:
        raise SsmError("InvalidParameters", f"parameter {name} is not one of {spec['allowedValues']}")
    if "maxChars" in spec and len(value) > int(spec["maxChars"]):
        raise SsmError("InvalidParameters", f"parameter {name} is over {spec['maxChars']} characters")


def _cloudwatch_output(config):
    """SendCommand's CloudWatchOutputConfig, checked as the API reference
    gives it (CloudWatchLogGroupName: 1 to 512 of [.-_/#A-Za-z0-9];
    CloudWatchOutputEnabled: a boolean) and recorded as ListCommands shows
    it; without a group name SSM names one after the document."""
    if config is None:
        return {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}
    if not isinstance(config, dict) or set(config) - {"CloudWatchLogGroupName", "CloudWatchOutputEnabled"}:
        raise SsmError("ValidationException", "CloudWatchOutputConfig takes CloudWatchLogGroupName and CloudWatchOutputEnabled")
    enabled = config.get("CloudWatchOutputEnabled", False)
    if not isinstance(enabled, bool):
        raise SsmError("ValidationException", "CloudWatchOutputEnabled must be a boolean")
    group = config.get("CloudWatchLogGroupName", "")
    if "CloudWatchLogGroupName" in config and not re.fullmatch(r"[.\-_/#A-Za-z0-9]{1,512}", group or ""):
        raise SsmError(
            "ValidationException",
            "1 validation error detected: Value at 'cloudWatchOutputConfig.cloudWatchLogGroupName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
        )
    return {"CloudWatchLogGroupName": group, "CloudWatchOutputEnabled": enabled}


def _sendable(state, agent):
    """Whether SendCommand accepts this node by id: registered, not Inactive
    (stricter than the documentation, which leaves Inactive open), in a state
    SSM lists as valid."""
    return agent is not None and agent["PingStatus"] != "Inactive" and state in ACCEPTED_STATES


def _limit(raw, total):
    raw = str(raw)
    if raw.endswith("%"):
        return int(total * int(raw[:-1]) / 100)
    return int(raw)


def _parse_time(value):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def load_documents(template_path):
    """Every AWS::SSM::Document in template.yaml, under its logical id: its
    content and its VersionName (its first version)."""
    with open(template_path) as f:
        template = yaml.safe_load(f)
    return {
        name: (resource["Properties"]["Content"], resource["Properties"].get("VersionName"))
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::SSM::Document"
    }


def make_handler(sim, pipes):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without this, Nagle's
        # algorithm and the client's delayed ACK hold the body back ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # quiet: tests read their own output
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):
            if self.path == "/_sim/health":
                return self._send(200, {"status": "ok"})
            if self.path.startswith("/_sim/hosts/"):
                view = sim.hosts.view(self.path.rsplit("/", 1)[-1])
                return self._send(200 if view else 404, view or {"message": "no such fake host"})
            if self.path == "/_sim/events":
                return self._send(200, sim.bus.report())
            self._send(404, {"message": "not found"})

        def do_POST(self):
            try:
                body = self._body()
                if self.path == "/_sim/outcomes":
                    return self._send(200, {"rules": sim.add_rules(body.get("rules", []))})
                if self.path == "/_sim/agents":
                    return self._send(200, {"agents": sim.set_agents(body)})
                if self.path == "/_sim/events":
                    try:
                        sim.bus.subscribe(body)
                    except (ValueError, TypeError) as e:
                        raise SsmError("InvalidRule", str(e))
                    return self._send(200, {})
                if self.path == "/_sim/hosts":
                    try:
                        ids = sim.hosts.configure(body)
                        if body.get("boot"):
                            for instance_id in ids:
                                sim.boot(instance_id)
                        return self._send(200, {"hosts": len(ids)})
                    except (ValueError, TypeError) as e:
                        raise SsmError("InvalidRule", str(e))
                if self.path == "/_sim/faults":
                    sim.add_fault(body)
                    return self._send(200, {})
                if self.path == "/_sim/pipes/drain":
                    return self._send(200, pipes.drain())
                if self.path == "/_sim/reset":
                    sim.reset()
                    return self._send(200, {})
                target = self.headers.get("X-Amz-Target", "")
                operation = target.split(".", 1)[-1]
                if not target.startswith("AmazonSSM.") or operation not in OPERATIONS:
                    raise SsmError("UnknownOperationException", f"the simulator does not serve {target or 'this request'}")
                fault = sim.fault_for(operation, body)
                if isinstance(fault, float):
                    time.sleep(fault)
                    fault = None
                if fault and fault.took_effect:
                    getattr(sim, operation)(body)  # done, and the answer is lost
                if fault:
                    raise fault
                self._send(200, getattr(sim, operation)(body))
            except SsmError as e:
                self._send(e.status, {"__type": e.code, "message": e.message})
            except Exception as e:  # a bug here must show, not hang the client
                self._send(500, {"__type": "InternalServerError", "message": repr(e)})

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5056)
    parser.add_argument("--moto-url", default="http://127.0.0.1:5055")
    parser.add_argument("--template", default="template.yaml", help="documents are read from here, by logical id")
    parser.add_argument(
        "--registration-delay", type=float, default=5.0,
        help="seconds a new running instance takes to register as a managed node (as the agent does on AWS)",
    )
    parser.add_argument(
        "--pipes-interval", type=float, default=0.25,
        help="seconds between the pipes' polls of their streams (default 0.25: four a second, as Lambda polls "
             "a DynamoDB stream shard); 0: only on POST /_sim/pipes/drain",
    )
    parser.add_argument(
        "--hosts-dir", default=None,
        help="where fake hosts keep their files (default: a fresh temporary directory)",
    )
    args = parser.parse_args()
    ec2 = boto3.client(
        "ec2", endpoint_url=args.moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    logs = boto3.client(
        "logs", endpoint_url=args.moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    hosts = FakeHosts(args.hosts_dir or tempfile.mkdtemp(prefix="flakefleet-hosts-"))
    sim = Simulator(
        ec2, load_documents(args.template), args.registration_delay, EventBus(load_patterns(args.template)), hosts,
        OutputUploader(logs, args.template),
    )
    threading.Thread(target=sim.watch_statuses, args=(0.2,), daemon=True).start()
    pipes = PipeRunner(args.moto_url)
    if args.pipes_interval > 0:
        threading.Thread(target=pipes.run, args=(args.pipes_interval,), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(sim, pipes))
    print(f"ssm simulator on 127.0.0.1:{args.port}, documents {sorted(sim.documents)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
