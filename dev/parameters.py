#!/usr/bin/env python3
"""Writes docs/parameters.md, the reference table of template.yaml's
parameters, from the template itself; `--check` fails when the file is not
what the template gives (dev/lint-template.py runs it in `make test`)."""

import sys

import yaml

OUT = "docs/parameters.md"

HEADER = """# Stack parameters

Generated from `template.yaml` by `dev/parameters.py`; `make test` fails when
this file and the template disagree. Set them in `samconfig.toml`
(`parameter_overrides`) or with `sam deploy --parameter-overrides`. Most set
the Lambda's `FLAKEFLEET_*` variable of the same meaning (README:
Configuration).

| Parameter | Default | Allowed | Description |
|---|---|---|---|
"""


def cell(text):
    text = " ".join(str(text).split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def allowed(spec):
    if "AllowedValues" in spec:
        return ", ".join(f"`{v}`" for v in spec["AllowedValues"])
    bounds = []
    if "MinValue" in spec or "MaxValue" in spec:
        bounds.append(f"{spec.get('MinValue', '')} to {spec.get('MaxValue', '')}".strip())
    if "MaxLength" in spec:
        bounds.append(f"length {spec.get('MinLength', 0)} to {spec['MaxLength']}")
    elif "MinLength" in spec:
        bounds.append(f"at least {spec['MinLength']} characters")
    if "AllowedPattern" in spec:
        bounds.append("pattern in the template")
    return "; ".join(bounds) or spec.get("Type", "")


def table(template):
    rows = []
    for name, spec in template["Parameters"].items():
        if "Default" not in spec:
            default = "required"
        elif spec["Default"] in ("", []):
            default = "(empty)"
        else:
            default = f"`{cell(spec['Default'])}`"
        rows.append(f"| `{name}` | {default} | {cell(allowed(spec))} | {cell(spec.get('Description', ''))} |")
    return HEADER + "\n".join(rows) + "\n"


def main():
    with open("template.yaml") as f:
        template = yaml.safe_load(f)
    missing = [n for n, spec in template["Parameters"].items() if not spec.get("Description")]
    if missing:
        sys.exit(f"template.yaml: parameters without a Description: {', '.join(missing)}")
    text = table(template)
    if sys.argv[1:] == ["--check"]:
        with open(OUT) as f:
            current = f.read()
        if current != text:
            sys.exit(f"{OUT} is not what template.yaml gives: run `.dev/venv/bin/python dev/parameters.py`")
        print(f"{OUT}: {len(template['Parameters'])} parameters, as template.yaml has them")
        return
    with open(OUT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
