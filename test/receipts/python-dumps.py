# Reference canonicalisation for the property test: one process for the whole batch.
# argv: cases.json (a JSON array of JSON texts), out.json (array: canonical text or null on error).
# allow_nan left at its default, as in the reference: inf/nan print as Infinity/NaN.
import json
import sys


def drop_none(obj):
    if isinstance(obj, dict):
        return {k: drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [drop_none(v) for v in obj if v is not None]
    return obj


with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
out = []
for text in cases:
    try:
        out.append(json.dumps(drop_none(json.loads(text)), separators=(",", ":"), sort_keys=True))
    except (ValueError, RecursionError):
        out.append(None)
with open(sys.argv[2], "w", encoding="ascii") as f:
    json.dump(out, f)
