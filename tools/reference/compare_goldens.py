"""Compare freshly generated model goldens with the committed ones (issue #9: a regenerated golden
must match the committed one).

usage: /usr/bin/python3 tools/reference/compare_goldens.py COMMITTED_DIR FRESH_DIR
       /usr/bin/python3 tools/reference/compare_goldens.py --self-check COMMITTED_DIR

Every file under either folder is compared (so goldens a generator adds later are covered without
changing this script); a file present on one side only is a failure (a golden not committed, or a
stale one the generator no longer writes). A file passes when it is byte-identical. Otherwise:
  *.safetensors  same tensor names, dtypes and shapes; every tensor within TOL x max|committed
                 tensor| (element-wise absolute difference); the __metadata__ keys equal, numeric
                 values within TOL relative, others equal.
  *.json         equal as JSON, numbers within TOL relative.
  anything else  must be byte-identical.
TOL is 1e-6 (the goldens are float64 results stored as float32: another CPU or BLAS may change
the float64 sums in the last bits and flip one float32 rounding, about 6e-8 relative), and 1e-2 for
files whose name contains "bf16" (such a difference can flip the bf16 rounding of an operand,
2^-8 relative, which the emulated bf16 forward then carries on). Both are far tighter than the
tolerances the model tests apply between ftune and the goldens.

--self-check copies COMMITTED_DIR, perturbs one value in the copy by 1e-3 relative of its tensor
and checks that this script reports it (the comparison is not vacuous). Exit 0 when all match."""
import json
import math
import os
import shutil
import struct
import sys
import tempfile

DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "I64": ("q", 8), "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1),
          "U8": ("B", 1), "BOOL": ("?", 1)}


def tolerance(name):
    return 1e-2 if "bf16" in name else 1e-6


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        raw = body[lo:hi]
        dt = info["dtype"]
        if dt in ("BF16", "F16"):
            # widen to float32: bf16 is the top half of a float32; f16 through struct's 'e'
            count = len(raw) // 2
            if dt == "BF16":
                vals = [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(count)]
            else:
                vals = list(struct.unpack("<%de" % count, raw))
        else:
            code, size = DTYPES[dt]
            vals = list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))
        tensors[name] = (dt, info["shape"], vals)
    return meta, tensors


def as_number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def close(a, b, tol):
    return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol * max(abs(a), abs(b), 1e-30))


def compare_json_values(a, b, tol, where, problems):
    na, nb = as_number(a), as_number(b)
    if na is not None and nb is not None and not isinstance(a, (dict, list)):
        if not close(na, nb, tol):
            problems.append("%s: %r, committed %r" % (where, b, a))
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            problems.append("%s: keys %s, committed %s" % (where, sorted(b), sorted(a)))
            return
        for k in a:
            compare_json_values(a[k], b[k], tol, "%s.%s" % (where, k), problems)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append("%s: %d items, committed %d" % (where, len(b), len(a)))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            compare_json_values(x, y, tol, "%s[%d]" % (where, i), problems)
        return
    if a != b:
        problems.append("%s: %r, committed %r" % (where, b, a))


def compare_file(rel, committed, fresh):
    """Problems found comparing two versions of one file (empty: they match)."""
    with open(committed, "rb") as f:
        a = f.read()
    with open(fresh, "rb") as f:
        b = f.read()
    if a == b:
        return [], "identical"
    tol = tolerance(rel)
    problems = []
    if rel.endswith(".safetensors"):
        ma, ta = read_safetensors(committed)
        mb, tb = read_safetensors(fresh)
        compare_json_values(ma, mb, tol, rel + " __metadata__", problems)
        if set(ta) != set(tb):
            problems.append("%s: tensors %s only in the fresh file, %s only in the committed one" %
                            (rel, sorted(set(tb) - set(ta)), sorted(set(ta) - set(tb))))
        worst = 0.0
        for name in sorted(set(ta) & set(tb)):
            (da, sa, va), (db, sb, vb) = ta[name], tb[name]
            if da != db or sa != sb:
                problems.append("%s: %s is %s%s, committed %s%s" % (rel, name, db, sb, da, sa))
                continue
            scale = max([abs(x) for x in va] + [1e-30])
            for i, (x, y) in enumerate(zip(va, vb)):
                d = abs(x - y) / scale if math.isfinite(x) and math.isfinite(y) else (0.0 if x == y or (
                    math.isnan(x) and math.isnan(y)) else math.inf)
                worst = max(worst, d)
                if d > tol:
                    problems.append("%s: %s[%d] = %.9g, committed %.9g (%.3g of the tensor's max, tolerance %g)" %
                                    (rel, name, i, y, x, d, tol))
                    break
        return problems, "within tolerance (worst %.3g of a tensor's max, tolerance %g)" % (worst, tol)
    if rel.endswith(".json"):
        compare_json_values(json.loads(a), json.loads(b), tol, rel, problems)
        return problems, "equal as JSON within %g" % tol
    return ["%s: differs (not a file compared numerically: it must be byte-identical)" % rel], ""


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def compare_trees(committed, fresh, quiet=False):
    a, b = files_under(committed), files_under(fresh)
    problems = []
    for rel in sorted(b - a):
        problems.append("%s: written by the generator but not committed" % rel)
    for rel in sorted(a - b):
        problems.append("%s: committed but no longer written by the generator (stale)" % rel)
    for rel in sorted(a & b):
        p, how = compare_file(rel, os.path.join(committed, rel), os.path.join(fresh, rel))
        problems += p
        if not p and not quiet:
            print("  %-50s %s" % (rel, how))
    return len(a | b), problems


def self_check(committed):
    """Perturb one value of a copy and expect the comparison to fail."""
    tmp = tempfile.mkdtemp()
    try:
        copy = os.path.join(tmp, "copy")
        shutil.copytree(committed, copy)
        target = sorted(r for r in files_under(copy) if r.endswith(".safetensors") and "bf16" not in r)[0]
        path = os.path.join(copy, target)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        name = sorted(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")[0]
        lo, hi = header[name]["data_offsets"]
        off = 8 + n + lo
        vals = struct.unpack("<%df" % ((hi - lo) // 4), bytes(data[off:off + hi - lo]))
        scale = max(abs(v) for v in vals)
        struct.pack_into("<f", data, off, vals[0] + 1e-3 * scale)
        with open(path, "wb") as f:
            f.write(data)
        _, problems = compare_trees(committed, copy, quiet=True)
        if not problems:
            print("self-check FAILED: a 1e-3 change of %s in %s was not reported" % (name, target))
            return 1
        print("self-check: a 1e-3 change of %s[0] in %s is reported: %s" % (name, target, problems[0]))
        return 0
    finally:
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--self-check":
        return self_check(sys.argv[2])
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    n, problems = compare_trees(sys.argv[1], sys.argv[2])
    for p in problems:
        print("MISMATCH " + p)
    print("%d golden files compared, %d problems" % (n, len(problems)))
    return 1 if problems or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
