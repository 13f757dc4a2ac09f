// Writes tests/fixtures/data/delta/train_table: a small Delta table of training rows for all three
// tasks (columns messages, prompt, response, text), its Parquet data files written by DuckDB and
// its _delta_log written here as the Delta protocol specifies:
//   version 0: part-00000.parquet (32 rows, ids 0..31; rows 4 and 5 are bad chat rows)
//   version 1: the same file with an inline deletion vector (delta-kernel-rs's test vector,
//              deleting rows {3, 4, 7, 11, 18, 29}), as remove + add
//   version 2: part-00001.parquet (8 rows, ids 32..39)
// Usage: NODE_PATH=<node_modules with @duckdb/node-api> node tools/reference/delta_train_table.mjs
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(path.join(process.env.NODE_PATH || path.resolve("tools/npm/node_modules"), "x.js"));
const { DuckDBInstance } = require("@duckdb/node-api");
const dir = "tests/fixtures/data/delta/train_table";
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir + "/_delta_log", { recursive: true });
const db = await DuckDBInstance.create(":memory:");
const con = await db.connect();
async function write(name, from, to) {
  await con.run(`COPY (SELECT i AS id,
      CASE WHEN i IN (4, 5) THEN [{'role': 'user', 'content': 'no answer ' || i}]
           ELSE [{'role': 'user', 'content': 'What is ' || i || ' + 1?'}, {'role': 'assistant', 'content': (i + 1)::VARCHAR}] END AS messages,
      'What is ' || i || ' + 1?' AS prompt, (i + 1)::VARCHAR AS response,
      'Counting: ' || i || ', then ' || (i + 1) || '.' AS text
    FROM range(${from}, ${to}) t(i) ORDER BY i) TO '${dir}/${name}' (FORMAT parquet, ROW_GROUP_SIZE 10)`);
  return fs.statSync(`${dir}/${name}`).size;
}
const s0 = await write("part-00000.parquet", 0, 32);
const s1 = await write("part-00001.parquet", 32, 40);
const str = (name) => ({ name, type: "string", nullable: true, metadata: {} });
const schema = { type: "struct", fields: [{ name: "id", type: "long", nullable: true, metadata: {} },
  { name: "messages", nullable: true, metadata: {}, type: { type: "array", containsNull: true,
    elementType: { type: "struct", fields: [str("role"), str("content")] } } },
  str("prompt"), str("response"), str("text")] };
const add = (p, size, dv) => ({ add: { path: p, partitionValues: {}, size, modificationTime: 0, dataChange: true,
  ...(dv ? { deletionVector: dv } : {}) } });
const dv = { storageType: "i", pathOrInlineDv: "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", sizeInBytes: 44, cardinality: 6 };
const commits = [
  [{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ["deletionVectors"], writerFeatures: ["deletionVectors"] } },
   { metaData: { id: "train-table", format: { provider: "parquet", options: {} }, schemaString: JSON.stringify(schema),
                 partitionColumns: [], configuration: { "delta.enableDeletionVectors": "true" } } },
   add("part-00000.parquet", s0)],
  [{ remove: { path: "part-00000.parquet", deletionTimestamp: 1, dataChange: true } }, add("part-00000.parquet", s0, dv)],
  [add("part-00001.parquet", s1)],
];
commits.forEach((c, v) => fs.writeFileSync(`${dir}/_delta_log/${String(v).padStart(20, "0")}.json`,
  c.map((a) => JSON.stringify(a)).join("\n") + "\n"));
console.log("wrote", dir);
