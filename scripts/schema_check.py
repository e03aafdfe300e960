#!/usr/bin/env python3
"""Validate YAML documents against stevedore's JSON Schema with an
independent validator (Python's `jsonschema`, draft 2020-12).

Usage: schema_check.py SCHEMA FILE...
Prints one JSON object per document: {"file", "document", "valid", "errors"}.
Exits 0 whatever the verdicts (the caller judges them); 2 on usage errors.
"""
import json
import sys

import jsonschema
import yaml


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for path in argv[2:]:
        with open(path, encoding="utf-8") as f:
            try:
                documents = [d for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                print(json.dumps({"file": path, "document": 0, "valid": False, "errors": [f"YAML: {e}"]}))
                continue
        for index, document in enumerate(documents):
            errors = sorted(
                f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in validator.iter_errors(document)
            )
            print(json.dumps({"file": path, "document": index, "valid": not errors, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
