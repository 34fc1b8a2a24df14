"""A fake host's SSM agent uploading a command's output to CloudWatch Logs
(SendCommand's CloudWatchOutputConfig), with the host's own credentials:
the calls the agent makes, in its order, each allowed or refused by the
host's IAM policy, against moto's CloudWatch Logs.

The agent (amazon-ssm-agent, agent/agentlogstocloudwatch/
cloudwatchlogspublisher/cloudwatchlogsservice.go and the run command's
output handler) creates the group (`CreateLogGroup`, "already exists"
ignored); on any other error it looks the group up (`DescribeLogGroups`
with the group's name as prefix); when that fails too, or finds nothing, it
uploads nothing and says so only in its own log. It then creates the
stream (`CreateLogStream`, "already exists" ignored) and puts the events
(`PutLogEvents`). Streams are named `<command id>/<instance id>/<step
name>/stdout` and `.../stderr`.

IAM authorises each call on a resource ARN (the Service Authorization
Reference for CloudWatch Logs, and the ARNs AWS's AccessDenied messages
name): CreateLogGroup and DescribeLogStreams on
`log-group:<name>:log-stream:`, DescribeLogGroups on the account's
`log-group::log-stream:` (not on any one group), CreateLogStream and
PutLogEvents on `log-group:<name>:log-stream:<stream>`. moto does not
authorise; this does, with the host's policy: its Allow statements, `*`
and `?` in actions and resources, nothing else granted. The policy is the
template's `FleetHostPolicy` unless a test gives a host another one.
"""

import fnmatch
import re
import time

import yaml

ACCOUNT, PARTITION = "123456789012", "aws"


class Denied(Exception):
    pass


def shipped_policy(template_path):
    """The template's FleetHostPolicy document, its `${...}` left for `bind`."""
    with open(template_path) as f:
        template = yaml.safe_load(f)
    return template["Resources"]["FleetHostPolicy"]["Properties"]["PolicyDocument"]


def bind(value, region, group):
    """The policy as it stands in the account: Fn::Sub evaluated for this
    region, the moto account and the command's log group (the stack's)."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        names = {"AWS::Partition": PARTITION, "AWS::Region": region, "AWS::AccountId": ACCOUNT,
                 "HostOutputLogGroup": group}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    if isinstance(value, dict):
        return {k: bind(v, region, group) for k, v in value.items()}
    if isinstance(value, list):
        return [bind(v, region, group) for v in value]
    return value


def allows(policy, action, resource):
    listed = lambda v: v if isinstance(v, list) else [v]
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            continue
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(statement.get("Action", []))) and any(
            fnmatch.fnmatchcase(resource, r) for r in listed(statement.get("Resource", []))
        ):
            return True
    return False


class OutputUploader:
    def __init__(self, logs, template_path, region="us-east-1"):
        self.logs, self.region = logs, region
        self.policy = shipped_policy(template_path)

    def upload(self, policy, group, command_id, instance_id, step, stdout, stderr):
        """Uploads as the agent would; answers the calls made, each
        `{"action", "resource", "allowed"}`, and what was put."""
        policy = bind(policy if policy is not None else self.policy, self.region, group)
        arn = f"arn:{PARTITION}:logs:{self.region}:{ACCOUNT}:log-group:"
        calls, put = [], {}

        def call(action, resource, run):
            allowed = allows(policy, f"logs:{action}", resource)
            calls.append({"action": f"logs:{action}", "resource": resource, "allowed": allowed})
            if not allowed:
                raise Denied(action)
            return run()

        try:
            call("CreateLogGroup", f"{arn}{group}:log-stream:", lambda: self.logs.create_log_group(logGroupName=group))
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        except Denied:
            try:
                found = call("DescribeLogGroups", f"{arn}:log-stream:",
                             lambda: self.logs.describe_log_groups(logGroupNamePrefix=group))
            except Denied:
                return {"calls": calls, "put": put}
            if not any(g["logGroupName"] == group for g in found.get("logGroups", [])):
                return {"calls": calls, "put": put}
        for name, text in (("stdout", stdout), ("stderr", stderr)):
            if not text:
                continue
            stream = f"{command_id}/{instance_id}/{step}/{name}"
            try:
                try:
                    call("CreateLogStream", f"{arn}{group}:log-stream:{stream}",
                         lambda: self.logs.create_log_stream(logGroupName=group, logStreamName=stream))
                except self.logs.exceptions.ResourceAlreadyExistsException:
                    pass
                now = int(time.time() * 1000)
                events = [{"timestamp": now, "message": line} for line in text.splitlines() if line]
                call("PutLogEvents", f"{arn}{group}:log-stream:{stream}",
                     lambda: self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events))
                put[name] = len(events)
            except Denied:
                continue
        return {"calls": calls, "put": put}
