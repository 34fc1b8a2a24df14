"""The Pipes input transformation as dev/event_pipes.py reads the documentation
(dev/README.md, "Pipes"): `python -m unittest discover -s dev -p 'test_*.py'`."""

import json
import unittest

from event_pipes import RecordFailed, transform

PIPE = {"Arn": "arn:aws:pipes:us-east-1:123456789012:pipe/p", "Name": "p",
        "Source": "arn:stream", "Target": "arn:aws:events:us-east-1:123456789012:event-bus/b"}
RECORD = {"eventName": "INSERT", "dynamodb": {"NewImage": {
    "detail": {"S": '{"status": "failed", "note": "a \\"quoted\\" word"}'},
    "version": {"N": "2"},
    "counts": {"M": {"Failed": {"N": "1"}}},
}}}


class Transform(unittest.TestCase):
    def test_a_bare_path_gives_the_strings_text(self):
        out = transform("<$.dynamodb.NewImage.detail.S>", RECORD, PIPE)
        self.assertEqual(json.loads(out), {"status": "failed", "note": 'a "quoted" word'})

    def test_a_dynamic_string_is_text(self):
        self.assertEqual(transform("v<$.dynamodb.NewImage.version.N>!", RECORD, PIPE), "v2!")

    def test_in_a_json_template_quoted_strings_are_escaped_and_objects_go_in_as_json(self):
        out = json.loads(transform(
            '{"d": "<$.dynamodb.NewImage.detail.S>", "v": <$.dynamodb.NewImage.version.N>,'
            ' "c": <$.dynamodb.NewImage.counts.M>}', RECORD, PIPE))
        self.assertEqual(out["d"], RECORD["dynamodb"]["NewImage"]["detail"]["S"])
        self.assertEqual(out["v"], "2", "a DynamoDB number is a string in the record")
        self.assertEqual(out["c"], {"Failed": {"N": "1"}}, "a map stays typed")

    def test_what_cannot_be_filled_fails_the_record(self):
        for template in ["<$.dynamodb.NewImage.missing.S>", '{"c": "<$.dynamodb.NewImage.counts.M>"}',
                         "<$..detail>", "<aws.pipes.unknown>", "<$.dynamodb.NewImage"]:
            with self.assertRaises(RecordFailed, msg=template):
                transform(template, RECORD, PIPE)

    def test_reserved_variables(self):
        self.assertEqual(transform("<aws.pipes.pipe-name>", RECORD, PIPE), "p")


if __name__ == "__main__":
    unittest.main()
