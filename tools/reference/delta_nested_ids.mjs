// Writes tests/fixtures/data/delta/id_mode_nested_ids/: a Delta table in column mapping id mode whose
// lists and maps carry field ids on their element, key and value (Delta's
// `delta.columnMapping.nested.ids`, written by IcebergCompatV2 writers), with misleading names at
// every struct level of the data file, so that only field ids say which field is which.
//
//   delta/part-00000.parquet: written by DuckDB with FIELD_IDS (element/key/value ids included)
//   delta/_delta_log/00000000000000000000.json: the schema with physical names and nested ids
//   expected.jsonl: DuckDB's rendering of the same rows under their logical names, in the value
//     mapping of `ftune data head` (maps as [{"key", "value"}])
//   stale/: the same data file under a log whose nested ids for `tags` name other ids (as if the
//     file belonged to another column): readers must refuse it, never read it as the table's.
//
// Usage: node tools/reference/delta_nested_ids.mjs   (needs tools/npm: make deps)
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const npm = path.resolve(process.env.NODE_PATH || "tools/npm/node_modules");
const require = createRequire(path.join(npm, "x.js"));
const { DuckDBInstance } = require("@duckdb/node-api");
const out = process.argv[2] || "tests/fixtures/data/delta/id_mode_nested_ids";

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(`${out}/delta/_delta_log`, { recursive: true });
fs.mkdirSync(`${out}/stale/_delta_log`, { recursive: true });
const db = await DuckDBInstance.create(":memory:");
const con = await db.connect();
// the rows, under their logical names
await con.run(`CREATE TABLE t AS SELECT i::BIGINT AS id,
    [{'role': 'user', 'content': 'Tag ' || i || '?'}, {'role': 'assistant', 'content': 'tag-' || i}] AS messages,
    CASE WHEN i % 4 = 3 THEN NULL ELSE MAP(['a' || i, 'b' || i], [{'score': i, 'note': 'n' || i}, {'score': -i, 'note': NULL}]) END AS tags,
    [[{'x': 'p' || i}], [], [{'x': NULL}, {'x': 'q' || i}]] AS nested
  FROM range(0, 9) r(i)`);
// written under misleading names: struct fields swapped or stale, each list element and map
// key/value with the field id the table gives it
await con.run(`COPY (SELECT id AS "col-tags",
    list_transform(messages, m -> {'col-content': m.role, 'col-role': m.content}) AS msgs_old,
    map_from_entries(list_transform(map_entries(tags), e -> {'key': e.key, 'value': {'col-note': e.value.score, 'col-score': e.value.note}})) AS "col-id",
    list_transform(nested, l -> list_transform(l, s -> {'y': s.x})) AS "col-messages"
  FROM t ORDER BY id) TO '${out}/delta/part-00000.parquet'
  (FORMAT parquet, ROW_GROUP_SIZE 4, FIELD_IDS {"col-tags": 1,
   msgs_old: {__duckdb_field_id: 2, element: {__duckdb_field_id: 10, "col-content": 3, "col-role": 4}},
   "col-id": {__duckdb_field_id: 5, key: 11, value: {__duckdb_field_id: 12, "col-note": 6, "col-score": 7}},
   "col-messages": {__duckdb_field_id: 8, element: {__duckdb_field_id: 13, element: {__duckdb_field_id: 14, y: 9}}}})`);
const md = (id, phys, nested) => ({ "delta.columnMapping.id": id, "delta.columnMapping.physicalName": phys,
                                    ...(nested ? { "delta.columnMapping.nested.ids": nested } : {}) });
const schema = (tagIds) => ({ type: "struct", fields: [
  { name: "id", type: "long", nullable: true, metadata: md(1, "col-id") },
  { name: "messages", nullable: true, metadata: md(2, "col-messages", { "col-messages.element": 10 }),
    type: { type: "array", containsNull: true, elementType: { type: "struct", fields: [
      { name: "role", type: "string", nullable: true, metadata: md(3, "col-role") },
      { name: "content", type: "string", nullable: true, metadata: md(4, "col-content") }] } } },
  { name: "tags", nullable: true, metadata: md(5, "col-tags", tagIds),
    type: { type: "map", keyType: "string", valueContainsNull: true, valueType: { type: "struct", fields: [
      { name: "score", type: "long", nullable: true, metadata: md(6, "col-score") },
      { name: "note", type: "string", nullable: true, metadata: md(7, "col-note") }] } } },
  { name: "nested", nullable: true, metadata: md(8, "col-nested", { "col-nested.element": 13, "col-nested.element.element": 14 }),
    type: { type: "array", containsNull: true, elementType: { type: "array", containsNull: true, elementType: {
      type: "struct", fields: [{ name: "x", type: "string", nullable: true, metadata: md(9, "col-x") }] } } } }] });
const size = fs.statSync(`${out}/delta/part-00000.parquet`).size;
const commit = (tagIds) => [
  { protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ["columnMapping"], writerFeatures: ["columnMapping", "icebergCompatV2"] } },
  { metaData: { id: "id-mode-nested-ids", format: { provider: "parquet", options: {} }, schemaString: JSON.stringify(schema(tagIds)),
                partitionColumns: [], configuration: { "delta.columnMapping.mode": "id", "delta.columnMapping.maxColumnId": "14" } } },
  { add: { path: "part-00000.parquet", partitionValues: {}, size, modificationTime: 0, dataChange: true } }]
  .map((a) => JSON.stringify(a)).join("\n") + "\n";
fs.writeFileSync(`${out}/delta/_delta_log/00000000000000000000.json`, commit({ "col-tags.key": 11, "col-tags.value": 12 }));
fs.copyFileSync(`${out}/delta/part-00000.parquet`, `${out}/stale/part-00000.parquet`);
fs.writeFileSync(`${out}/stale/_delta_log/00000000000000000000.json`, commit({ "col-tags.key": 21, "col-tags.value": 22 }));
const rows = await (await con.run(`SELECT to_json({'id': id, 'messages': messages,
    'tags': CASE WHEN tags IS NULL THEN NULL ELSE map_entries(tags) END, 'nested': nested})::VARCHAR AS j FROM t ORDER BY id`)).getRowObjectsJS();
fs.writeFileSync(`${out}/expected.jsonl`, rows.map((r) => r.j).join("\n") + "\n");
// the field ids DuckDB wrote, as a check that the file carries what the log says
const ids = await (await con.run(`SELECT name, field_id FROM parquet_schema('${out}/delta/part-00000.parquet')`)).getRowObjectsJS();
console.log(ids.map((r) => `${r.name}:${r.field_id}`).join(" "));
console.log(`wrote ${out} (${rows.length} rows)`);
