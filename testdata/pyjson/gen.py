"""Writes golden.json: what CPython's json module does with each input, the oracle of pyjson.go.

Run with any CPython 3: python3 gen.py > golden.json
"""
import json, sys

docs = [
    '{"zarr_format":3,"node_type":"group","attributes":{},"consolidated_metadata":{"kind":"inline","must_understand":false,"metadata":{}}}',
    '{"a":1,"b":[1,2,{"c":null}],"d":true,"e":false,"f":"x"}',
    '{"floats":[0.1,1.0,1e16,1e15,1E5,1e-5,0.0001,1.5e300,5e-324,-0.0,2.5e-07,123456789012345678.0,1e22,1e21,3.14159,1e400,-1e400,0.30000000000000004]}',
    '{"ints":[0,-0,12345678901234567890123,-5,9223372036854775807,18446744073709551615]}',
    '{"special":[NaN,Infinity,-Infinity]}',
    '{"s":"\\u00e9\\u4e2d\\ud83d\\ude00 raw: \u00e9\u4e2d\U0001F600","ctl":"\\u0000\\u001f\\u007f\\b\\f\\n\\r\\t\\"\\\\\\/"}',
    '{"lone":"\\ud800","lone_low":"\\udc00x","pair_then":"\\ud800\\u0041","upper":"\\u00C9"}',
    '{"dup":1,"other":2,"dup":3}',
    '  {\n\t"ws" : [ 1 , 2 ] \r}  ',
    '{}',
    '{"empty_list":[],"empty_obj":{},"nested":[[],[{}],{"x":[]}]}',
    '{"shape":[4,6],"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},"fill_value":"NaN","attributes":{"unicode key \\u00e9":1}}',
    # Not JSON for Python
    '{"a":1,}',
    '{"a":01}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":1e}',
    '{"a":"tab\there"}',
    '{"a":"\\x"}',
    '{"a":"\\u12"}',
    '{"a":-}',
    '{"a":nul}',
    '{"a":1} x',
    '{a:1}',
    '[1,2]',
    '"str"',
    '{"a":"\\ud800\\uzzzz more"}',
    '{"a":+1}',
    '{"a":[1 2]}',
]
ints = ["0", " 12 ", "+7", "-3", "1_000", "1__0", "_1", "1_", "", "x", "12a", "\t5\n", "99999999999999999999", "-0"]
out = {"docs": [], "ints": []}
for d in docs:
    rec = {"in": d}
    try:
        v = json.loads(d.encode("utf-8").decode("utf-8"))
    except json.JSONDecodeError:
        rec["error"] = True
        out["docs"].append(rec)
        continue
    rec["dumps"] = json.dumps(v)
    rec["dumps_indent2"] = json.dumps(v, indent=2)
    rec["is_dict"] = isinstance(v, dict)
    out["docs"].append(rec)
for s in ints:
    try:
        out["ints"].append({"in": s, "int": str(int(s))})
    except ValueError:
        out["ints"].append({"in": s, "error": True})
json.dump(out, sys.stdout, indent=1, ensure_ascii=True)
print()
