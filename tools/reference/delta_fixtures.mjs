// Copies the Delta project's golden tables (../shared/refs/delta/golden, Apache-2.0) and a few
// delta-kernel-rs test tables into tests/fixtures/data/delta/, and writes each golden table's
// expected rows (its expected/*.parquet, read by DuckDB, an independent Parquet reader) as JSON
// Lines in the value mapping of `ftune data head`.
// Usage: NODE_PATH=<dir with node_modules holding @duckdb/node-api> node tools/reference/delta_fixtures.mjs REFS_DELTA
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(path.join(process.env.NODE_PATH || ".", "x.js"));
const { DuckDBInstance } = require("@duckdb/node-api");
const refs = process.argv[2] || "/work/shared/refs/delta";
const out = "tests/fixtures/data/delta";
// too big to keep in the repository (2.3 MB of data files; 1M expected rows)
const SKIP = new Set(["parquet-decimal-type", "parquet-decimal-dictionaries"]); // 1M expected rows
const KERNEL = ["basic_partitioned", "compacted-log-files-table", "mixed-nulls", "partition_cm", "table-without-dv-small",
  "v1-multi-part-struct-stats-only", "v2-checkpoints-json-with-sidecars", "v2-checkpoints-parquet-with-sidecars",
  "with-short-dv", "with_checkpoint_no_last_checkpoint"];

function copyTree(src, dst) {
  fs.mkdirSync(dst, { recursive: true });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    if (e.name.endsWith(".crc")) continue; // Hadoop checksums: not part of the table
    const s = path.join(src, e.name), d = path.join(dst, e.name);
    if (e.isDirectory()) copyTree(s, d); else fs.copyFileSync(s, d);
  }
}

const db = await DuckDBInstance.create(":memory:");
const con = await db.connect();
await con.run("SET TimeZone='UTC'");

function conv(v, t) {
  if (v === null || v === undefined) return null;
  const ts = t.toString();
  if (/^(BIGINT|HUGEINT|UBIGINT)$/.test(ts)) return { raw: String(v) };
  if (ts.startsWith("TIMESTAMP")) {
    // "2021-09-08 11:11:11[.ffffff][+00]" -> ISO 8601 with microseconds (+ Z when UTC-adjusted)
    const m = /^(-?\d+-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?(\+00)?$/.exec(v);
    if (!m) throw new Error("timestamp " + v);
    return `${m[1]}T${m[2]}.${(m[3] || "").padEnd(6, "0")}` + (ts.includes("TIME ZONE") ? "Z" : "");
  }
  if (ts === "BLOB") return Buffer.from(v.replace(/\\x([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("base64");
  if (ts.endsWith("[]")) return v.map((x) => conv(x, t.valueType));
  if (ts.startsWith("STRUCT")) { const o = {}; t.entryNames.forEach((n, i) => (o[n] = conv(v[n], t.entryTypes[i]))); return o; }
  if (ts.startsWith("MAP")) return v.map((e) => ({ key: conv(e.key, t.keyType), value: conv(e.value, t.valueType) }));
  return v;
}
const dump = (o) => JSON.stringify(o, (k, x) => (x && typeof x === "object" && "raw" in x && Object.keys(x).length === 1 ? `__RAW${x.raw}__` : x)).replace(/"__RAW(-?\d+)__"/g, "$1");

const golden = path.join(refs, "golden");
let n = 0;
for (const name of fs.readdirSync(golden).sort()) {
  if (SKIP.has(name)) continue;
  const src = path.join(golden, name);
  copyTree(path.join(src, "delta"), path.join(out, "golden", name, "delta"));
  const exp = path.join(src, "expected");
  if (!fs.existsSync(exp)) continue;
  const files = fs.readdirSync(exp).filter((f) => f.endsWith(".parquet"));
  let lines = [];
  if (files.length) {
    const r = await con.runAndReadAll(`SELECT * FROM read_parquet('${exp}/*.parquet')`);
    const types = r.columnTypes(), names = r.columnNames();
    for (const row of r.getRowObjectsJson()) {
      const o = {};
      names.forEach((c, i) => (o[c] = conv(row[c], types[i])));
      lines.push(dump(o));
    }
  }
  fs.writeFileSync(path.join(out, "golden", name, "expected.jsonl"), lines.join("\n") + (lines.length ? "\n" : ""));
  n++;
}
for (const name of KERNEL) copyTree(path.join(refs, "kernel-data", name), path.join(out, "kernel", name));
for (const name of ["simple_table", "simple_table_with_checkpoint", "delta-0.8.0-partitioned", "table-with-dv-small"])
  copyTree(path.join(refs, name), path.join(out, name));
console.log(`golden tables with expected rows: ${n}`);
