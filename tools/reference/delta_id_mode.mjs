// Writes the Delta column-mapping "id mode" fixtures under tests/fixtures/data/delta/:
//
// id_mode_swapped/: the Delta project's golden table data-reader-timestamp_ntz-id-mode with the
//   Parquet footers of its data files re-encoded so that the top-level columns that carry a
//   field_id swap names. Field ids still say which column is which; a reader that went by the
//   physical names would read one column as the other. expected.jsonl is the golden table's own
//   (DuckDB's reading of the Delta project's expected/ files, as for the other golden tables).
//
// id_mode_nested/: one Parquet file written by DuckDB with FIELD_IDS, whose column and nested
//   struct field names are all misleading (swapped with each other, stale names, and a dropped
//   column whose name is the physical name of a live one), and a _delta_log written here in id
//   mode. expected.jsonl: DuckDB renders the same values under their logical names.
//
// Usage: node tools/reference/delta_id_mode.mjs   (needs tools/npm: make deps)
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const npm = path.resolve(process.env.NODE_PATH || "tools/npm/node_modules");
const require = createRequire(path.join(npm, "x.js"));
const { DuckDBInstance } = require("@duckdb/node-api");
const thr = await import(path.join(npm, "hyparquet/src/thrift.js"));
const thw = await import(path.join(npm, "hyparquet-writer/src/thrift.js"));
const hw = await import(path.join(npm, "hyparquet-writer/src/bytewriter.js"));
const base = "tests/fixtures/data/delta";

// ---------------------------------------------------------------- id_mode_swapped
function rewriteFooter(file, edit) {
  const buf = fs.readFileSync(file);
  const n = buf.readUInt32LE(buf.length - 8);
  const footer = buf.subarray(buf.length - 8 - n, buf.length - 8);
  const meta = thr.deserializeTCompactProtocol({ view: new DataView(footer.buffer, footer.byteOffset, footer.byteLength), offset: 0 });
  edit(meta);
  const w = new hw.ByteWriter();
  thw.serializeTCompactProtocol(w, meta);
  const nf = new Uint8Array(w.getBuffer());
  const len = Buffer.alloc(4);
  len.writeUInt32LE(nf.length);
  fs.writeFileSync(file, Buffer.concat([buf.subarray(0, buf.length - 8 - n), nf, len, Buffer.from("PAR1")]));
}
{
  const golden = `${base}/golden/data-reader-timestamp_ntz-id-mode`;
  const out = `${base}/id_mode_swapped`;
  fs.rmSync(out, { recursive: true, force: true });
  fs.cpSync(`${golden}/delta`, `${out}/delta`, { recursive: true });
  fs.copyFileSync(`${golden}/expected.jsonl`, `${out}/expected.jsonl`);
  const files = [];
  (function walk(d) {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && e.name !== "_delta_log") walk(p);
      else if (e.name.endsWith(".parquet")) files.push(p);
    }
  })(`${out}/delta`);
  for (const f of files)
    rewriteFooter(f, (meta) => {
      // schema (field_2): element 0 is the root; its num_children (field_5) top-level fields
      // follow in pre-order. Rotate the names (field_4) of the top-level ones with a field_id (field_9).
      const el = meta.field_2;
      const top = [];
      let i = 1;
      for (let k = 0; k < el[0].field_5; k++) {
        top.push(i);
        let pending = 1;
        while (pending > 0) pending += (el[i++].field_5 ?? 0) - 1;
      }
      const ided = top.filter((j) => el[j].field_9 !== undefined);
      if (ided.length < 2) throw new Error(`${f}: fewer than two columns with field ids`);
      const names = ided.map((j) => el[j].field_4);
      ided.forEach((j, k) => (el[j].field_4 = names[(k + 1) % names.length]));
    });
  console.log(`wrote ${out} (${files.length} data files re-encoded)`);
}

// ---------------------------------------------------------------- id_mode_nested
{
  const out = `${base}/id_mode_nested`;
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(`${out}/delta/_delta_log`, { recursive: true });
  const db = await DuckDBInstance.create(":memory:");
  const con = await db.connect();
  // the rows, under their logical names
  await con.run(`CREATE TABLE t AS SELECT i::BIGINT AS id,
      [{'role': 'user', 'content': 'What is ' || i || ' + 1?'}, {'role': 'assistant', 'content': (i + 1)::VARCHAR}] AS messages,
      {'lang': CASE WHEN i % 3 = 0 THEN NULL ELSE 'en-' || i END} AS info
    FROM range(0, 12) r(i)`);
  // written under misleading names: id as "col-info", messages as "m_old" with role/content
  // swapped, info as "col-id" with lang as "l", and a dropped column named like messages' physical name
  await con.run(`COPY (SELECT id AS "col-info",
      list_transform(messages, x -> {'col-content': x.role, 'col-role': x.content}) AS m_old,
      {'l': info.lang} AS "col-id", 'dropped ' || id AS "col-messages"
    FROM t ORDER BY id) TO '${out}/delta/part-00000.parquet'
    (FORMAT parquet, ROW_GROUP_SIZE 5, FIELD_IDS {"col-info": 1, m_old: {__duckdb_field_id: 2, element: {"col-content": 3, "col-role": 4}},
     "col-id": {__duckdb_field_id: 5, l: 6}, "col-messages": 99})`);
  const md = (id, phys) => ({ "delta.columnMapping.id": id, "delta.columnMapping.physicalName": phys });
  const schema = { type: "struct", fields: [
    { name: "id", type: "long", nullable: true, metadata: md(1, "col-id") },
    { name: "messages", nullable: true, metadata: md(2, "col-messages"), type: { type: "array", containsNull: true,
      elementType: { type: "struct", fields: [
        { name: "role", type: "string", nullable: true, metadata: md(3, "col-role") },
        { name: "content", type: "string", nullable: true, metadata: md(4, "col-content") }] } } },
    { name: "info", nullable: true, metadata: md(5, "col-info"), type: { type: "struct", fields: [
      { name: "lang", type: "string", nullable: true, metadata: md(6, "col-lang") }] } }] };
  const size = fs.statSync(`${out}/delta/part-00000.parquet`).size;
  const commit = [
    { protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ["columnMapping"], writerFeatures: ["columnMapping"] } },
    { metaData: { id: "id-mode-nested", format: { provider: "parquet", options: {} }, schemaString: JSON.stringify(schema),
                  partitionColumns: [], configuration: { "delta.columnMapping.mode": "id", "delta.columnMapping.maxColumnId": "6" } } },
    { add: { path: "part-00000.parquet", partitionValues: {}, size, modificationTime: 0, dataChange: true } }];
  fs.writeFileSync(`${out}/delta/_delta_log/00000000000000000000.json`, commit.map((a) => JSON.stringify(a)).join("\n") + "\n");
  const rows = await (await con.run(`SELECT to_json({'id': id, 'messages': messages, 'info': info})::VARCHAR AS j FROM t ORDER BY id`)).getRowObjectsJS();
  fs.writeFileSync(`${out}/expected.jsonl`, rows.map((r) => r.j).join("\n") + "\n");
  console.log(`wrote ${out} (${rows.length} rows)`);
}
