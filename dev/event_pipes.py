"""EventBridge Pipes for the local AWS: moto stores pipes (CreatePipe,
DescribePipe, ...) but never runs them; this runs every RUNNING pipe whose
source is a DynamoDB stream and whose target is an event bus, as the
template's NoticesPipe is. It reads the stream from moto, applies the pipe's
own FilterCriteria and InputTemplate, and puts to moto's EventBridge; what
the bus refuses past MaximumRetryAttempts goes to the DeadLetterConfig queue.

The behaviour follows AWS's documentation (dev/README.md, "Pipes"); where it
is silent, the stricter reading: a template path that finds nothing, or a
payload the bus target cannot take as a detail, fails the record.

The SSM simulator runs it in a thread (every 0.25 s) and on POST
/_sim/pipes/drain, which returns once every record written before the call
has been carried (tests call it instead of sleeping)."""

import json
import re
import threading
import time

import boto3

from ssm_events import matches

PLACEHOLDER = re.compile(r"<([^<>]+)>")
PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]")


class RecordFailed(Exception):
    """This record cannot be carried: retried, then sent to the dead-letter queue."""


def resolve(path, record):
    """EventBridge's supported JSON path subset: `$` then `.name` and `[n]`."""
    if not path.startswith("$"):
        raise RecordFailed(f"{path}: a path starts with $")
    value, rest = record, path[1:]
    while rest:
        step = PATH_STEP.match(rest)
        if not step:
            raise RecordFailed(f"{path}: unsupported JSON path syntax")
        name, index = step.groups()
        if name is not None:
            if not isinstance(value, dict) or name not in value:
                raise RecordFailed(f"{path}: not in the record")
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                raise RecordFailed(f"{path}: not in the record")
            value = value[int(index)]
        rest = rest[step.end():]
    return value


def reserved(name, pipe, now):
    values = {
        "aws.pipes.pipe-arn": pipe["Arn"],
        "aws.pipes.pipe-name": pipe["Name"],
        "aws.pipes.source-arn": pipe["Source"],
        "aws.pipes.target-arn": pipe["Target"],
        "aws.pipes.event.ingestion-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    if name not in values:
        raise RecordFailed(f"<{name}>: not a reserved variable")
    return values[name]


def transform(template, record, pipe, now=None):
    """The payload of `record` through `template` (Pipes input transformation).

    A template that is a JSON object is filled so that it stays JSON: inside a
    string, a variable must be a string, number or boolean and goes in
    escaped; outside, any value goes in as JSON. Any other template is text
    (the documentation's "static string", "JSON path" and "dynamic string"),
    filled with each value's text: a string as it is."""
    now = time.time() if now is None else now
    as_json = template.lstrip().startswith("{")
    out, in_string, i = [], False, 0
    while i < len(template):
        ch = template[i]
        if ch == "<":
            end = template.find(">", i)
            if end < 0:
                raise RecordFailed("an unclosed < in the input template")
            name = template[i + 1:end]
            value = resolve(name, record) if name.startswith("$") else reserved(name, pipe, now)
            if not as_json:
                out.append(value if isinstance(value, str) else json.dumps(value))
            elif in_string:
                if isinstance(value, (dict, list)) or value is None:
                    raise RecordFailed(f"<{name}> is an object, array or null inside quotes")
                out.append(json.dumps(value if isinstance(value, str) else json.dumps(value))[1:-1])
            else:
                out.append(json.dumps(value))
            i = end + 1
            continue
        if as_json and ch == '"':
            in_string = not in_string
        elif as_json and ch == "\\" and in_string:
            out.append(template[i:i + 2])
            i += 2
            continue
        out.append(ch)
        i += 1
    payload = "".join(out)
    if as_json:
        try:
            json.loads(payload)
        except ValueError as e:
            raise RecordFailed(f"the input template does not give JSON: {e}") from None
    return payload


class PipeRunner:
    def __init__(self, moto_url):
        def client(service):
            return boto3.client(
                service, endpoint_url=moto_url, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )

        self.pipes = client("pipes")
        self.streams = client("dynamodbstreams")
        self.events = client("events")
        self.sqs = client("sqs")
        self.lock = threading.Lock()
        # pipe ARN -> shard id -> the sequence number to read from next
        self.positions = {}
        # pipe ARN -> (its description, its stream's shard ids). A pipe's
        # definition is fixed once created here (nothing calls UpdatePipe),
        # and moto's stream has one shard for the table's life; caching both
        # keeps an idle pass at three calls a pipe, since moto serves one
        # request at a time and the tests share it.
        self.described = {}
        self.delivered = 0
        self.dead_lettered = 0

    def run(self, interval):
        while True:
            try:
                self.drain()
            except Exception as e:  # moto restarting, say: the next pass
                print(f"pipes: {type(e).__name__}: {e}", flush=True)
            time.sleep(interval)

    def drain(self):
        """Carries every record there is, for every running pipe. One pipe's
        trouble (its table deleted, say) is printed and skips that pipe only."""
        with self.lock:
            for page in self.pipes.get_paginator("list_pipes").paginate():
                for listed in page["Pipes"]:
                    if listed["CurrentState"] != "RUNNING" or listed["DesiredState"] != "RUNNING":
                        continue
                    try:
                        self._run_pipe(listed["Arn"], listed["Name"])
                    except Exception as e:
                        print(f"pipes: {listed['Name']}: {type(e).__name__}: {e}", flush=True)
            return {"delivered": self.delivered, "dead_lettered": self.dead_lettered}

    def _run_pipe(self, arn, name):
        if arn not in self.described:
            pipe = self.pipes.describe_pipe(Name=name)
            shards = []
            if "DynamoDBStreamParameters" in pipe.get("SourceParameters", {}):
                stream = self.streams.describe_stream(StreamArn=pipe["Source"])["StreamDescription"]
                shards = [(s["ShardId"], int(s["SequenceNumberRange"]["StartingSequenceNumber"]))
                          for s in stream["Shards"]]
            self.described[arn] = (pipe, shards)
        pipe, shards = self.described[arn]
        params = pipe.get("SourceParameters", {}).get("DynamoDBStreamParameters")
        if params is None or not pipe["Target"].startswith("arn:aws:events:"):
            return  # not a kind this runner carries
        positions = self.positions.setdefault(pipe["Arn"], {})
        for shard_id, starting in shards:
            if shard_id not in positions:
                # Where the pipe starts reading, fixed when it first runs.
                positions[shard_id] = starting
                if params["StartingPosition"] == "LATEST":
                    positions[shard_id] += len(self._read(pipe, shard_id, positions[shard_id], None))
            self._carry_shard(pipe, params, shard_id, positions)

    def _read(self, pipe, shard_id, position, limit):
        """The shard's records from `position` on (at most `limit`)."""
        iterator = self.streams.get_shard_iterator(
            StreamArn=pipe["Source"], ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=str(position),
        )["ShardIterator"]
        records = []
        while limit is None or len(records) < limit:
            out = self.streams.get_records(ShardIterator=iterator, Limit=1000 if limit is None else limit)
            if not out["Records"]:
                break
            records.extend(out["Records"])
            iterator = out["NextShardIterator"]
        return records if limit is None else records[:limit]

    def _carry_shard(self, pipe, params, shard_id, positions):
        while True:
            records = self._read(pipe, shard_id, positions[shard_id], params.get("BatchSize", 100))
            if not records:
                return
            done = self._carry_batch(pipe, params, shard_id, records)
            if done == 0:
                return  # the first record failed and waits for its next attempt
            positions[shard_id] = int(records[done - 1]["dynamodb"]["SequenceNumber"]) + 1

    def _carry_batch(self, pipe, params, shard_id, records):
        """Carries records in order; answers how many are done (carried,
        filtered out or dead-lettered). A stream keeps its order: a record
        is tried 1 + MaximumRetryAttempts times (here at once, where AWS
        backs off: never kinder) before what follows it moves."""
        filters = [json.loads(f["Pattern"]) for f in
                   pipe.get("SourceParameters", {}).get("FilterCriteria", {}).get("Filters", [])]
        target = pipe.get("TargetParameters", {})
        bus = target.get("EventBridgeEventBusParameters", {})
        retries = params.get("MaximumRetryAttempts", -1)
        done = 0
        for record in records:
            if filters and not any(matches(f, record) for f in filters):
                done += 1
                continue
            attempts = 0
            while True:
                attempts += 1
                try:
                    self._put(pipe, target, bus, record)
                    self.delivered += 1
                    break
                except RecordFailed as e:
                    print(f"pipes: {pipe['Name']}: record {record['dynamodb']['SequenceNumber']} not carried "
                          f"(attempt {attempts}): {e}", flush=True)
                    if retries == -1:
                        return done  # retried until the record expires from the stream
                    if attempts > retries:
                        self._dead_letter(pipe, params, shard_id, record, str(e))
                        break
            done += 1
        return done

    def _put(self, pipe, target, bus, record):
        template = target.get("InputTemplate")
        payload = json.dumps(record) if template is None else transform(template, record, pipe)
        try:
            detail = json.loads(payload)
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            raise RecordFailed("an event bus target takes a JSON object as the event's detail")
        entry = {
            "Source": bus.get("Source", "Pipe " + pipe["Name"]),
            "DetailType": bus.get("DetailType", "Event from aws:dynamodb.stream"),
            "Detail": payload,
            "EventBusName": pipe["Target"],
        }
        if bus.get("Resources"):
            entry["Resources"] = bus["Resources"]
        try:
            out = self.events.put_events(Entries=[entry])
        except Exception as e:  # moto's (and EventBridge's) refusal of the whole call
            raise RecordFailed(f"PutEvents: {e}") from None
        failed = [r for r in out["Entries"] if r.get("ErrorCode")]
        if out.get("FailedEntryCount") or failed:
            raise RecordFailed(f"PutEvents: {failed}")

    def _dead_letter(self, pipe, params, shard_id, record, why):
        """What Pipes sends for a stream source: the failed batch's place in
        the stream, not the record (read the item from the table)."""
        arn = params.get("DeadLetterConfig", {}).get("Arn")
        if not arn:
            print(f"pipes: {pipe['Name']}: record dropped after its retries: {why}", flush=True)
            return
        name = arn.rsplit(":", 1)[1]
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sequence = record["dynamodb"]["SequenceNumber"]
        body = {
            "context": {"pipeArn": pipe["Arn"], "condition": "RetryAttemptsExhausted", "reason": why},
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": sequence,
                "endSequenceNumber": sequence,
                "batchSize": 1,
                "streamArn": pipe["Source"],
                "approximateArrivalOfFirstRecord": record["dynamodb"].get("ApproximateCreationDateTime"),
            },
        }
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body, default=str))
        self.dead_lettered += 1
