// Writes two Parquet files under tests/fixtures/parquet/ (named bad-* so the DuckDB matrix test
// leaves them out) whose rows a JSONL line could not carry as they are, for the record rules of
// table rows (src/data/table.c, data_row_to_record):
//   bad-nul-content.parquet: chat rows, the first with a NUL byte inside a message's content
//   bad-u64-prompt.parquet: an IFT row whose prompt is a UBIGINT beyond int64 (a number, not text)
// Usage: node tools/reference/parquet_record_edges.mjs   (needs tools/npm: make deps)
import { createRequire } from "module";
import path from "path";
const npm = path.resolve(process.env.NODE_PATH || "tools/npm/node_modules");
const require = createRequire(path.join(npm, "x.js"));
const { DuckDBInstance } = require("@duckdb/node-api");
const dir = "tests/fixtures/parquet";
const db = await DuckDBInstance.create(":memory:");
const con = await db.connect();
await con.run(`COPY (SELECT [{'role': 'user', 'content': 'hi' || chr(0) || 'there'}, {'role': 'assistant', 'content': 'ok'}] AS messages
   UNION ALL SELECT [{'role': 'user', 'content': 'fine'}, {'role': 'assistant', 'content': 'yes'}]) TO '${dir}/bad-nul-content.parquet' (FORMAT parquet)`);
await con.run(`COPY (SELECT 18446744073709551615::UBIGINT AS prompt, 'r' AS response) TO '${dir}/bad-u64-prompt.parquet' (FORMAT parquet)`);
console.log(`wrote ${dir}/bad-nul-content.parquet, ${dir}/bad-u64-prompt.parquet`);
