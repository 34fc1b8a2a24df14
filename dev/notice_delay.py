"""How long a notice takes from its write to the bus on the local stack: the
delay the template's notices pipe adds (run by the SSM simulator's thread,
dev/event_pipes.py, every 0.25 s). Needs the local AWS (dev/local-aws.sh).

  python dev/notice_delay.py [N]

Writes N notice items (as the store writes them, one at a time) to a table of
its own and times each from the write's answer to the event on a queue that a
rule on the bus fills; prints the median and the largest, in milliseconds."""

import json
import sys
import time

from fleet import client, listen_queue, table

count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
name = f"notice-delay-{int(time.time())}"
table(name)
queue = listen_queue(f"{name}-notices")
ddb, sqs = client("dynamodb"), client("sqs")
delays = []
for i in range(count):
    detail = json.dumps({"event_id": f"R/{i}", "status": "pending"})
    ddb.put_item(TableName=name, Item={"pk": {"S": "FLEET#delay"}, "sk": {"S": f"NOTICE#R#{i:010}"},
                                       "detail": {"S": detail}})
    written = time.monotonic()
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages", [])
        if messages:
            delays.append((time.monotonic() - written) * 1000)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
            break
        time.sleep(0.005)
delays.sort()
print(f"{count} notices: median {delays[len(delays) // 2]:.0f} ms, largest {delays[-1]:.0f} ms")
