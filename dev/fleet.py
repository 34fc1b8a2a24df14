#!/usr/bin/env python3
"""Sets up the local AWS for flakefleet: the table (schema read from
template.yaml), the fleet's instance profile and a small fleet of tagged
instances in moto; and scripts the SSM simulator's outcomes.

  fleet.py table NAME                 create the releases table if missing, with its stream, and
                                     the template's notices pipe from it to a bus NAME-notices
  fleet.py instances N KEY=VALUE [K] run N instances of the NixOS image with that tag, K to a
                                     reservation (default all in one); prints their ids
  fleet.py outcome JSON               add an outcome rule to the SSM simulator
  fleet.py agents STATUS ID...        set these instances' SSM agents (Online, ConnectionLost,
                                     Inactive, NotRegistered) now; unset, an agent registers
                                     Online a few seconds after launch
  fleet.py terminate ID               terminate an instance (an instance dying)
  fleet.py profile NAME               create an instance profile in IAM (if missing)
  fleet.py host ACTIVATION ID...      make these instances fake hosts of the SSM simulator, which runs
                                     the apply document's own script on them; ACTIVATION is works,
                                     fails (fh's habit: exit 0, the old system kept) or errors
  fleet.py agent-version VERSION ID...  set these instances' SSM agents Online at this version
  fleet.py unhealthy PART ID...       these fake hosts' releases declare a health check that fails on
                                     releases whose flakeref contains PART
  fleet.py launched ACTIVATION        instances launched from now on become fake hosts (works,
                                     fails or errors) that run their user data as they boot
  fleet.py wait-agents ID...          wait (up to 60 s) until these instances are Online managed
                                     nodes in the SSM simulator, as after a boot
  fleet.py sends FLAKEREF             how many apply commands of that flakeref each instance
                                     got from the SSM simulator, as {"commands": instances}
  fleet.py listen BUS [TABLE]         send flakefleet's events on that EventBridge bus (default:
                                     the default bus) to an SQS queue of its own; prints its URL.
                                     With TABLE: the template's notices pipe carries TABLE's
                                     notices to BUS
  fleet.py heard QUEUE_URL            the events that queue received since last asked, as a JSON
                                     list (after the pipes carried every notice written so far)
  fleet.py dead-letters TABLE         the messages in TABLE's notices dead-letter queue, as JSON
"""

import json
import os
import sys
import urllib.request

import boto3
import yaml

MOTO = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055")
SIM = os.environ.get("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5056")
REGION = os.environ.get("AWS_REGION", "us-east-1")
NIXOS_OWNER = "535002876703"
PROFILE = "FlakeHubClientMachine"


def client(service):
    return boto3.client(service, endpoint_url=MOTO, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def table(name):
    with open("template.yaml") as f:
        props = yaml.safe_load(f)["Resources"]["ReleasesTable"]["Properties"]
    ddb = client("dynamodb")
    if name in ddb.list_tables()["TableNames"]:
        print(f"table {name} exists")
        return
    ddb.create_table(TableName=name, BillingMode=props["BillingMode"],
                     AttributeDefinitions=props["AttributeDefinitions"], KeySchema=props["KeySchema"],
                     StreamSpecification={"StreamEnabled": True, **props["StreamSpecification"]})
    ttl = props["TimeToLiveSpecification"]
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    notices(name, f"{name}-notices")
    print(f"table {name} created (TTL on {ttl['AttributeName']}; notices to the bus {name}-notices)")


def notices(table_name, bus):
    """The template's NoticesPipe, as CloudFormation would create it for a
    stack whose table is `table_name` and whose notices bus is `bus`: the
    definition is the template's own, its references filled with these
    names. Creates the bus and the dead-letter queue if missing."""
    with open("template.yaml") as f:
        resources = yaml.safe_load(f)["Resources"]
    events, sqs, ddb, pipes = client("events"), client("sqs"), client("dynamodb"), client("pipes")
    if bus != "default" and not any(b["Name"] == bus for b in events.list_event_buses(NamePrefix=bus)["EventBuses"]):
        events.create_event_bus(Name=bus)
    bus_arn = events.describe_event_bus(Name=bus)["Arn"]
    queue = sqs.create_queue(QueueName=dead_letter_queue_name(table_name))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stream_arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    name = pipe_name(table_name)
    values = {
        ("ReleasesTable", "StreamArn"): stream_arn,
        ("NoticesBus", "Arn"): bus_arn,
        ("NoticesDeadLetterQueue", "Arn"): queue_arn,
        ("NoticesPipeRole", "Arn"): f"arn:aws:iam::123456789012:role/{name}",
        "${AWS::StackName}-notices": name,
    }

    def fill(value):
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            return values[tuple(value["Fn::GetAtt"])]
        if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
            return values[value["Fn::Sub"]]
        if isinstance(value, dict):
            if any(k.startswith("Fn::") or k == "Ref" for k in value):
                raise SystemExit(f"fleet.py cannot fill {value} in NoticesPipe")
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    props = fill(resources["NoticesPipe"]["Properties"])
    if any(p["Name"] == name for p in pipes.list_pipes(NamePrefix=name)["Pipes"]):
        return
    pipes.create_pipe(**props)
    for _ in range(50):  # moto moves a new pipe from CREATING to RUNNING as it is described
        if pipes.describe_pipe(Name=name)["CurrentState"] == "RUNNING":
            return
    raise SystemExit(f"the pipe {name} never came to RUNNING")


def pipe_name(table_name):
    return f"{table_name}-notices"[:64]


def dead_letter_queue_name(table_name):
    return f"{table_name}-notices-dlq"[:80]


def dead_letters(table_name):
    heard(client("sqs").get_queue_url(QueueName=dead_letter_queue_name(table_name))["QueueUrl"])


def instances(count, tag, per_reservation=None):
    """Launches `count` instances, `per_reservation` to a RunInstances call (all
    in one by default). moto pages DescribeInstances by reservation, EC2 by
    instance: one instance per reservation makes moto's pages EC2's."""
    per_reservation = per_reservation or count
    key, value = tag.split("=", 1)
    ec2 = client("ec2")
    create_profile(PROFILE)
    images = ec2.describe_images(Owners=[NIXOS_OWNER], Filters=[
        {"Name": "name", "Values": ["determinate/nixos/epoch-1/26.05.*"]},
        {"Name": "architecture", "Values": ["x86_64"]},
    ])["Images"]
    image = max(images, key=lambda i: i["Name"])
    ids = []
    while len(ids) < count:
        n = min(per_reservation, count - len(ids))
        out = ec2.run_instances(
            ImageId=image["ImageId"], InstanceType="t3a.nano", MinCount=n, MaxCount=n,
            IamInstanceProfile={"Name": PROFILE}, MetadataOptions={"HttpTokens": "required"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": key, "Value": value}]}],
        )
        ids += [i["InstanceId"] for i in out["Instances"]]
    print(f"{count} instances tagged {key}={value} on {image['Name']}", file=sys.stderr)
    print("\n".join(ids))


def outcome(rule_json):
    rule = json.loads(rule_json)
    request = urllib.request.Request(f"{SIM}/_sim/outcomes", data=json.dumps({"rules": [rule]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        json.load(response)
    print(f"SSM simulator: {rule}")


def agents(status, ids):
    """Sets the SSM agents of these instances (Online, ConnectionLost, Inactive
    or NotRegistered) at once, instead of waiting for them to register."""
    body = json.dumps({"instance_ids": ids, "ping_status": status}).encode()
    request = urllib.request.Request(f"{SIM}/_sim/agents", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        json.load(response)
    print(f"SSM simulator: {len(ids)} agents {status}", file=sys.stderr)


def create_profile(name):
    iam = client("iam")
    try:
        iam.create_instance_profile(InstanceProfileName=name)
    except iam.exceptions.EntityAlreadyExistsException:
        pass


def _sim_post(path, body):
    request = urllib.request.Request(f"{SIM}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def host(activation, ids):
    """Makes these instances fake hosts that run the document's own script."""
    _sim_post("/_sim/hosts", {"instance_ids": ids, "activation": activation, "noise_lines": 200})
    print(f"SSM simulator: {len(ids)} fake hosts, activation {activation}", file=sys.stderr)


def unhealthy(part, ids):
    """These fake hosts' releases declare a health check `web`; it fails on
    releases whose flakeref contains `part` and passes on the others."""
    _sim_post("/_sim/hosts", {"instance_ids": ids, "activation": "works", "noise_lines": 200,
                              "health": "passes", "health_for": {part: "fails"}})
    print(f"SSM simulator: {len(ids)} fake hosts, health check failing on {part}", file=sys.stderr)


def launched(activation):
    """Makes every instance that registers by itself from now on (one
    flakefleet launches) a fake host that boots its user data."""
    _sim_post("/_sim/hosts", {"launched": True, "activation": activation, "noise_lines": 200})
    print(f"SSM simulator: launched instances become fake hosts, activation {activation}", file=sys.stderr)


def agent_version(version, ids):
    _sim_post("/_sim/agents", {"instance_ids": ids, "ping_status": "Online", "agent_version": version})
    print(f"SSM simulator: {len(ids)} agents at {version}", file=sys.stderr)


def wait_agents(ids):
    """Waits until the simulator lists every one of these instances as an
    Online managed node (their agents register a few seconds after launch)."""
    import time
    ssm = boto3.client("ssm", endpoint_url=SIM, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    for _ in range(120):
        listed = ssm.describe_instance_information(
            Filters=[{"Key": "PingStatus", "Values": ["Online"]}], MaxResults=50)
        online = {i["InstanceId"] for i in listed["InstanceInformationList"]}
        if set(ids) <= online:
            print(f"SSM simulator: {len(ids)} agents Online", file=sys.stderr)
            return
        time.sleep(0.5)
    sys.exit(f"agents not Online after 60 s: {sorted(set(ids) - online)}")


def sends(flakeref):
    """Counts the simulator's commands of one flakeref per instance: the
    exactly-once check at a scale the tests do not reach."""
    ssm = boto3.client("ssm", endpoint_url=SIM, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    per_instance = {}
    for page in ssm.get_paginator("list_commands").paginate():
        for command in page["Commands"]:
            if command["Parameters"].get("flakeref") != [flakeref]:
                continue
            for instance_id in command.get("InstanceIds", []):
                per_instance[instance_id] = per_instance.get(instance_id, 0) + 1
    histogram = {}
    for count in per_instance.values():
        histogram[str(count)] = histogram.get(str(count), 0) + 1
    print(json.dumps(histogram, sort_keys=True))


def listen(bus, table_name=None):
    """Prints the URL of an SQS queue that a rule on `bus` fills with every
    event from source flakefleet; with `table_name`, that table's notices
    pipe carries to `bus`."""
    if table_name:
        notices(table_name, bus)
    print(listen_queue(bus))


def listen_queue(bus):
    events, sqs = client("events"), client("sqs")
    name = f"{bus}-listener".replace("/", "-")[:80]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name[:64], EventBusName=bus, EventPattern=json.dumps({"source": ["flakefleet"]}))
    events.put_targets(Rule=name[:64], EventBusName=bus, Targets=[{"Id": "listener", "Arn": arn}])
    return queue


def heard(queue):
    """Prints the bodies of the messages in `queue` (and takes them out),
    once the pipes have carried every record written so far."""
    _sim_post("/_sim/pipes/drain", {})
    sqs = client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    print(json.dumps(bodies))


def log_events(group, stream):
    """Prints how many events a CloudWatch Logs stream holds, and its last message."""
    logs = client("logs")
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        events = []
    print(len(events))
    print(events[-1]["message"] if events else "")


def terminate(instance_id):
    client("ec2").terminate_instances(InstanceIds=[instance_id])
    print(f"terminated {instance_id}")


if __name__ == "__main__":
    commands = {"table": lambda a: table(a[0]), "instances": lambda a: instances(int(a[0]), a[1], int(a[2]) if len(a) > 2 else None),
                "outcome": lambda a: outcome(a[0]), "terminate": lambda a: terminate(a[0]),
                "agents": lambda a: agents(a[0], a[1:]),
                "profile": lambda a: create_profile(a[0]), "sends": lambda a: sends(a[0]),
                "wait-agents": lambda a: wait_agents(a), "host": lambda a: host(a[0], a[1:]),
                "agent-version": lambda a: agent_version(a[0], a[1:]), "launched": lambda a: launched(a[0]),
                "unhealthy": lambda a: unhealthy(a[0], a[1:]),
                "listen": lambda a: listen(a[0] if a else "default", a[1] if len(a) > 1 else None),
                "heard": lambda a: heard(a[0]), "dead-letters": lambda a: dead_letters(a[0]),
                "log-events": lambda a: log_events(a[0], a[1])}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])
