// Writes tests/fixtures/data/arrow/*.arrow with npm apache-arrow (an independent Arrow writer and
// reader) and, beside each, the rows as JSON Lines in the value mapping of `ftune data head`,
// computed here from apache-arrow's own decoding of the file it wrote.
// Usage: NODE_PATH=<dir with node_modules> node tools/reference/arrow_fixtures.mjs [outdir]
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(process.env.NODE_PATH ? path.join(process.env.NODE_PATH, "x.js") : import.meta.url);
const A = require("apache-arrow");
const out = process.argv[2] || "tests/fixtures/data/arrow";
fs.mkdirSync(out, { recursive: true });

const pad = (n, w) => String(n).padStart(w, "0");
function iso(ms, micros, utc) {
  const d = new Date(ms);
  const s = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(micros, 6)}`;
  return utc ? s + "Z" : s;
}
function date(days) {
  const d = new Date(days * 86400000);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
}
function decimal(words, scale) { // Uint32Array little-endian words of a 128-bit two's complement
  let v = 0n;
  for (let i = words.length - 1; i >= 0; i--) v = (v << 32n) | BigInt(words[i]);
  if (v >> 127n) v -= 1n << 128n;
  const neg = v < 0n; if (neg) v = -v;
  let s = v.toString().padStart(scale + 1, "0");
  if (scale > 0) s = s.slice(0, s.length - scale) + "." + s.slice(s.length - scale);
  return (neg ? "-" : "") + s;
}
// JSON of one value of field type `t` (as apache-arrow decodes it)
function j(v, t) {
  if (v === null || v === undefined) return null;
  switch (t.typeId) {
    case A.Type.Bool: return v;
    case A.Type.Int: return typeof v === "bigint" ? (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : { big: v.toString() }) : v;
    case A.Type.Float: return Number.isNaN(v) ? "NaN" : v === Infinity ? "Infinity" : v === -Infinity ? "-Infinity" : v;
    case A.Type.Utf8: case A.Type.LargeUtf8: return v;
    case A.Type.Binary: case A.Type.LargeBinary: return Buffer.from(v).toString("base64");
    case A.Type.Date: return date(Math.floor(Number(v) / 86400000));
    case A.Type.Timestamp: {
      const n = BigInt(v); // apache-arrow gives ms as a number for every unit; use the raw value below
      return n;
    }
    case A.Type.Decimal: return decimal(v, t.scale);
    case A.Type.List: return Array.from(v, (x) => j(x, t.children[0].type));
    case A.Type.Struct: { const o = {}; for (const f of t.children) o[f.name] = j(v[f.name], f.type); return o; }
    case A.Type.Map: { const r = []; for (const [k, x] of v) r.push({ key: j(k, t.children[0].type.children[0].type), value: j(x, t.children[0].type.children[1].type) }); return r; }
    case A.Type.Dictionary: return j(v, t.dictionary);
  }
  throw new Error("type " + t);
}
function rowsJson(table) {
  const lines = [];
  for (let r = 0; r < table.numRows; r++) {
    const o = {};
    for (const f of table.schema.fields) {
      const col = table.getChild(f.name);
      let v = col.get(r);
      if (f.type.typeId === A.Type.Timestamp && v !== null) {
        // raw integer of the column's unit from the data buffer
        const chunk = col.data.find((d, i) => r >= col.data.slice(0, i).reduce((a, c) => a + c.length, 0)) || col.data[0];
        let off = 0, k = 0; while (r >= off + col.data[k].length) { off += col.data[k].length; k++; }
        const raw = BigInt(col.data[k].values[r - off]);
        const per = [1000000n, 1000n, 1n, 1n][f.type.unit]; // to micros (ns: divide)
        let us = f.type.unit === 3 ? raw / 1000n - (raw % 1000n < 0n ? 1n : 0n) : raw * per;
        const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
        const micro = Number(us - (ms / 1000n - ((ms % 1000n) < 0n ? 1n : 0n)) * 1000000n);
        o[f.name] = iso(Number(ms), micro, !!f.type.timezone);
        void chunk;
      } else {
        o[f.name] = j(v, f.type);
      }
    }
    lines.push(JSON.stringify(o, (k, x) => (x && typeof x === "object" && "big" in x ? `__BIG${x.big}__` : x)).replace(/"__BIG(-?\d+)__"/g, "$1"));
  }
  return lines.join("\n") + "\n";
}

function vec(type, values) { return A.vectorFromArray(values, type); }
const utf8 = new A.Utf8();
const msgT = new A.Struct([new A.Field("role", utf8, true), new A.Field("content", utf8, true)]);

// 1. every type the reader handles, with nulls (stream and file format, two record batches)
function typesTable(offset) {
  const n = 5;
  const pick = (arr) => arr.slice(offset, offset + n);
  const cols = {
    b: vec(new A.Bool(), pick([true, false, null, true, false, true, null, false, true, true])),
    i8: vec(new A.Int8(), pick([-128, 127, null, 0, 5, -1, 2, 3, null, 4])),
    i16: vec(new A.Int16(), pick([-32768, 32767, 1, null, 0, 9, 8, 7, 6, 5])),
    i32: vec(new A.Int32(), pick([-2147483648, 2147483647, null, 42, 0, 1, 2, 3, 4, 5])),
    i64: vec(new A.Int64(), pick([-9223372036854775808n, 9223372036854775807n, null, 0n, 1n, 2n, 3n, 4n, 5n, 6n])),
    u8: vec(new A.Uint8(), pick([255, 0, null, 1, 2, 3, 4, 5, 6, 7])),
    u64: vec(new A.Uint64(), pick([18446744073709551615n, 0n, null, 7n, 8n, 9n, 10n, 11n, 12n, 13n])),
    f32: vec(new A.Float32(), pick([1.5, -0.25, null, NaN, Infinity, 3.0, 0.5, 2.0, -1.0, 8.0])),
    f64: vec(new A.Float64(), pick([0.1, -1e300, null, -Infinity, 2.5, 1 / 3, 7.0, 1e-7, 123456.789, -0.0])),
    s: vec(utf8, pick(["héllo", "", null, "tab\tand \"quotes\"", "日本語", "a", "b", "c", "d", "e"])),
    bin: vec(new A.Binary(), pick([Uint8Array.of(0, 1, 2), Uint8Array.of(), null, Uint8Array.of(255), Uint8Array.of(104, 105), Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3), Uint8Array.of(4), Uint8Array.of(5)])),
    d32: vec(new A.DateDay(), pick([new Date(Date.UTC(2021, 8, 8)), new Date(Date.UTC(1969, 11, 31)), null, new Date(Date.UTC(1, 0, 1)), new Date(Date.UTC(2000, 1, 29)), new Date(0), new Date(86400000), new Date(Date.UTC(2100, 0, 1)), new Date(Date.UTC(1900, 2, 1)), new Date(Date.UTC(2024, 11, 31))])),
    tsu: vec(new A.TimestampMicrosecond("UTC"), pick([Date.UTC(2021, 8, 8, 11, 11, 11), -1, null, 0, 1631099471123, 86400000, 1, 2, 3, 4])),
    tsm: vec(new A.TimestampMillisecond(), pick([Date.UTC(2021, 8, 8, 11, 11, 11, 5), -1001, null, 0, 1, 2, 3, 4, 5, 6])),
    li: vec(new A.List(new A.Field("item", new A.Int32(), true)), pick([[1, 2, 3], [], null, [null, 4], [5], [6, 7], [], [8], [9, 9], [0]])),
    st: vec(new A.Struct([new A.Field("x", new A.Int32(), true), new A.Field("y", utf8, true)]), pick([{ x: 1, y: "a" }, { x: null, y: "b" }, null, { x: 3, y: null }, { x: 4, y: "d" }, { x: 5, y: "e" }, { x: 6, y: "f" }, { x: 7, y: "g" }, { x: 8, y: "h" }, { x: 9, y: "i" }])),
    m: vec(new A.Map_(new A.Field("entries", new A.Struct([new A.Field("key", utf8, false), new A.Field("value", new A.Int32(), true)]), false)), pick([new Map([["a", 1], ["b", null]]), new Map(), null, new Map([["z", 26]]), new Map([["k", 0]]), new Map(), new Map([["q", 1]]), new Map(), new Map(), new Map()])),
    dict: vec(new A.Dictionary(utf8, new A.Int32()), pick(["red", "green", null, "red", "blue", "green", "red", "red", "blue", "green"])),
    messages: vec(new A.List(new A.Field("item", msgT, true)), pick([[{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello!" }], [], null, [{ role: "system", content: null }], [{ role: "user", content: "x" }], [], [], [], [], []])),
  };
  return new A.Table(cols);
}
const t1 = typesTable(0), t2 = typesTable(5);
const both = t1.concat(t2);
fs.writeFileSync(path.join(out, "types.stream.arrow"), A.tableToIPC(both, "stream"));
// the file format does not allow replacement dictionaries: one batch
fs.writeFileSync(path.join(out, "types.file.arrow"), A.tableToIPC(t1, "file"));
// the expected rows: read back what was written, with apache-arrow
for (const f of ["types.stream.arrow", "types.file.arrow"]) {
  const back = A.tableFromIPC(fs.readFileSync(path.join(out, f)));
  fs.writeFileSync(path.join(out, f.replace(/\.arrow$/, ".expected.jsonl")), rowsJson(back));
}

// 2. training rows, as a datasets cache file: chat, instruction and text columns
function trainingTable(bad) {
  return new A.Table({
    messages: vec(new A.List(new A.Field("item", msgT, true)), [
      [{ role: "user", content: "What is 2+2?" }, { role: "assistant", content: "4" }],
      bad ? [{ role: "user", content: "no answer" }] : [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello." }],
      [{ role: "user", content: "Name a colour." }, { role: "assistant", content: "Blue." }],
    ]),
    prompt: vec(utf8, ["What is 2+2?", bad ? null : "Say hi", "Name a colour."]),
    response: vec(utf8, ["4", "Hello.", "Blue."]),
    text: vec(utf8, ["The quick brown fox.", bad ? null : "Jumps over the lazy dog.", "The end."]),
  });
}
fs.writeFileSync(path.join(out, "train.arrow"), A.tableToIPC(trainingTable(false), "stream"));
fs.writeFileSync(path.join(out, "train_bad.arrow"), A.tableToIPC(trainingTable(true), "stream"));
console.log("wrote", fs.readdirSync(out).join(" "));
