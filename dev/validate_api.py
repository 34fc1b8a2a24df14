"""Checks flakefleet API answers against the published contract.

    validate_api.py NAME < answers.jsonl

Each line of stdin is one JSON answer; NAME is the body it must be, one of
the names under `x-responses` in docs/api/schema.json (ReleaseBody,
ReleasePage, FleetBody, ReconcileBody, Health, ErrorBody). Exits 1 naming
the first answer and field that break the contract. The schema is draft
2020-12 and closed (no field it does not name), so an answer the handler
built by hand, outside src/api, fails here.
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api" / "schema.json"


def validator(name):
    published = json.loads(SCHEMA.read_text())
    if name not in published["x-responses"]:
        sys.exit(f"{name} is not a response body; the contract has {sorted(published['x-responses'])}")
    schema = {"$schema": published["$schema"], "$defs": published["$defs"], "$ref": f"#/$defs/{name}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def main():
    check = validator(sys.argv[1])
    count = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        error = best_match(check.iter_errors(json.loads(line)))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
            sys.exit(f"answer {number} is not a {sys.argv[1]}: at {where}: {error.message}")
        count += 1
    if count == 0:
        sys.exit("no answer on stdin")
    print(f"{count} answers are valid {sys.argv[1]}s")


if __name__ == "__main__":
    main()
