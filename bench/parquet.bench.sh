#!/bin/sh
# Parquet vs JSONL (issue #11): the same generated chat data as JSONL and as Parquet (converted by
# DuckDB, ZSTD, from tools/npm), validated and tokenized with the Llama 3 Instruct tokenizer and
# chat template by one program, alternating rounds; prints rows/s of each and the ratio
# (parquet_over_jsonl >= 1: Parquet is not slower).
# Env: PQ_MB (JSONL size, default 20), PQ_T (context length, default 2048), PQ_THREADS (default
# all), PQ_ROUNDS (default 4), PQ_INDEX=1 (also build the dataset index as a training run does:
# the Parquet reader then writes each record's text to its spill for the loader's fetch).
set -e
MB=${PQ_MB:-20}
T=${PQ_T:-2048}
TH=${PQ_THREADS:-0}
ROUNDS=${PQ_ROUNDS:-4}
. bench/data_common.sh
data_bench_setup parquet_bench "$MB"
sh tools/deps.sh >/dev/null
node -e '
const duck = require(process.cwd() + "/tools/npm/node_modules/@duckdb/node-api");
(async () => {
  const db = await duck.DuckDBInstance.create(":memory:");
  const con = await db.connect();
  await con.run(`COPY (SELECT * FROM read_json("${process.argv[1]}", format = "newline_delimited")) TO "${process.argv[2]}" (FORMAT parquet, COMPRESSION zstd)`);
})();' "$tmp/chat.jsonl" "$tmp/chat.parquet"
echo "parquet: $(du -m "$tmp/chat.jsonl" | cut -f1) MB of chat JSONL = $(du -m "$tmp/chat.parquet" | cut -f1) MB of Parquet, context length $T"
"$tmp/parquet_bench" "$tmp/tok" "$tmp/chat.jsonl" "$tmp/chat.parquet" "$T" "$TH" "$ROUNDS" ${PQ_INDEX:+index}
