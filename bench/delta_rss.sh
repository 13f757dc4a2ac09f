#!/bin/sh
# Delta tables in bounded memory (issue #11 item 8): a chat table of ROWS rows (default 1M; ten
# Parquet data files written by DuckDB from tools/npm, and a hand-written _delta_log commit
# adding them) and a table of SMALL_ROWS rows (default 20000: one row group), each validated by
# `ftune validate` (every row read, checked and spilled); prints the peak RSS of both and their
# ratio. Memory that does not grow with the table means a ratio near 1 (the spill file, not
# memory, holds the records).
# Env: ROWS (default 1000000), SMALL_ROWS (default 20000), BUILD (default build).
set -e
ROWS=${ROWS:-1000000}
SMALL_ROWS=${SMALL_ROWS:-20000}
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -x "$BUILD/ftune" ] || make -s all
sh tools/deps.sh >/dev/null
NODE_DUCK=${NODE_DUCK:-$(pwd)/tools/npm/node_modules/@duckdb/node-api}
cat > "$tmp/make_table.js" <<'JS'
const duck = require(process.argv[2]);
const fs = require("fs");
const [dir, rows, files] = [process.argv[3], +process.argv[4], +process.argv[5]];
(async () => {
  const db = await duck.DuckDBInstance.create(":memory:");
  const con = await db.connect();
  fs.mkdirSync(dir + "/_delta_log", { recursive: true });
  const per = Math.ceil(rows / files), adds = [];
  for (let f = 0; f < files; f++) {
    const name = `part-${String(f).padStart(5, "0")}.parquet`;
    await con.run(`COPY (SELECT [{'role': 'user', 'content': 'Question ' || i || ': ' || repeat('words ', 20)},
        {'role': 'assistant', 'content': 'Answer ' || i || ': ' || repeat('more words ', 30)}] AS messages
        FROM range(${f * per}, ${Math.min(rows, (f + 1) * per)}) t(i)) TO '${dir}/${name}' (FORMAT parquet, ROW_GROUP_SIZE 20000)`);
    adds.push({ add: { path: name, partitionValues: {}, size: fs.statSync(dir + "/" + name).size, modificationTime: 0, dataChange: true } });
  }
  const str = (name) => ({ name, type: "string", nullable: true, metadata: {} });
  const schema = { type: "struct", fields: [{ name: "messages", nullable: true, metadata: {},
    type: { type: "array", containsNull: true, elementType: { type: "struct", fields: [str("role"), str("content")] } } }] };
  const lines = [{ protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
    { metaData: { id: "bench", format: { provider: "parquet", options: {} }, schemaString: JSON.stringify(schema),
                  partitionColumns: [], configuration: {} } },
    ...adds];
  fs.writeFileSync(dir + "/_delta_log/00000000000000000000.json", lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
})();
JS
make_table() { node "$tmp/make_table.js" "$NODE_DUCK" "$1" "$2" "$3"; }
make_table "$tmp/big" "$ROWS" 10
make_table "$tmp/small" "$SMALL_ROWS" 1
rss() { # peak RSS in KiB of validating the table
  /usr/bin/time -f %M "$BUILD/ftune" validate --task-type CHAT_COMPLETION --threads 2 "$1" 2>&1 >/dev/null | tail -1
}
small=$(rss "$tmp/small")
big=$(rss "$tmp/big")
echo "delta_rss: rows $SMALL_ROWS -> peak RSS ${small} KiB; rows $ROWS -> peak RSS ${big} KiB; ratio $(echo "$big $small" | awk '{printf "%.2f", $1 / $2}') (1.00 = memory does not grow with the table)"
echo "delta_rss: table sizes $(du -sm "$tmp/small" | cut -f1) MB and $(du -sm "$tmp/big" | cut -f1) MB"
