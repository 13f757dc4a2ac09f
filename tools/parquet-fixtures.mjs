// tools/parquet-fixtures.mjs: write the Parquet test fixtures with three independent writers and
// the rows every file must read as, from an independent reader (DuckDB), into tests/fixtures/parquet/.
//
//   node tools/parquet-fixtures.mjs            (after `make deps`: npm packages pinned in tools/npm)
//
// Writers: @duckdb/node-api (every codec x PARQUET_VERSION V1/V2, nested columns with nulls and
// empty lists, maps, structs, decimals, dates, timestamps), parquet-wasm (parquet-rs: v2 pages
// with is_compressed=false, DELTA_BYTE_ARRAY, dictionary fallback, several row groups and pages),
// hyparquet-writer (DELTA_* encodings, BYTE_STREAM_SPLIT, two-member GZIP, a deprecated codec).
// For each NAME.parquet the script writes NAME.expected.jsonl: the rows as DuckDB reads them,
// formatted with the value mapping of docs/data.md ("Values as JSON") by SQL, never by hand.
import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const npm = path.join(here, 'npm')
const require = createRequire(path.join(npm, 'package.json'))
const duck = require('@duckdb/node-api')
const arrow = require('apache-arrow')
const pw = require('parquet-wasm')
const hw = await import(path.join(npm, 'node_modules/hyparquet-writer/src/index.js'))

const out = process.argv[2] || path.join(here, '..', 'tests', 'fixtures', 'parquet')
fs.mkdirSync(out, { recursive: true })
for (const f of fs.readdirSync(out)) if (/\.(parquet|jsonl)$/.test(f) && !f.startsWith('ref-')) fs.unlinkSync(path.join(out, f))
// the shared reference files (written by DuckDB and hyparquet-writer), kept as ref-*.parquet
const refs = [path.join(here, '..', '..', 'shared', 'refs', 'parquet'), path.join(here, '..', '..', '..', 'shared', 'refs', 'parquet')]
  .find((d) => fs.existsSync(d)) ?? ''
for (const f of ['duck.parquet', 'hyw.parquet'])
  if (fs.existsSync(path.join(refs, f))) fs.copyFileSync(path.join(refs, f), path.join(out, `ref-${f}`))
// Spark-written files of the Delta golden tables: every Spark type, in the standard and in the
// legacy format (INT96 timestamps, two-level `array` lists, fixed-length decimals)
for (const [table, name] of [['parquet-all-types', 'spark-all-types'], ['parquet-all-types-legacy-format', 'spark-all-types-legacy']]) {
  const dir = path.join(refs, '..', 'delta', 'golden', table, 'delta')
  const part = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => f.endsWith('.parquet')) : undefined
  if (part) fs.copyFileSync(path.join(dir, part), path.join(out, `ref-${name}.parquet`))
}

const db = await duck.DuckDBInstance.create(':memory:')
const con = await db.connect()
await con.run("SET TimeZone = 'UTC'").catch(() => {})

// ------------------------------------------------------------------ DuckDB matrix
// 40 rows of every kind of column, nulls and empty lists included; written once per codec and
// page version.
const table = `
CREATE TABLE t AS SELECT
  i::BIGINT AS id,
  CASE WHEN i % 7 = 3 THEN NULL ELSE (i * 1000003 - 20000000)::INTEGER END AS i32,
  (18446744073709551615::UBIGINT - i::UBIGINT) AS u64,
  CASE WHEN i % 5 = 1 THEN NULL ELSE (i - 20) * 0.25 END::DOUBLE AS d,
  ((i - 20) * 0.1)::FLOAT AS f,
  i % 3 = 0 AS b,
  CASE WHEN i % 6 = 2 THEN NULL WHEN i % 6 = 4 THEN '' ELSE 'row ' || i || ' naïve café 你好 "q" \\ ' || repeat('x', i % 4) END AS s,
  CASE WHEN i % 4 = 1 THEN NULL ELSE ('\\x00\\xFF' || i::VARCHAR)::BLOB END AS bin,
  ((i - 20) * 1.125)::DECIMAL(9,3) AS dec9,
  ((i - 20) * 12345.6789)::DECIMAL(18,4) AS dec18,
  ((i - 20) * 1234567890123.0123456789)::DECIMAL(38,10) AS dec38,
  DATE '1969-12-25' + (i * 97)::INTEGER AS dt,
  TIMESTAMP '1969-12-31 23:59:58.123456' + INTERVAL (i * 3600007) MILLISECOND AS ts,
  (TIMESTAMP '2021-09-08 11:11:11' + INTERVAL (i) SECOND)::TIMESTAMP_MS AS ts_ms,
  (TIMESTAMP '2021-09-08 11:11:11.5' + INTERVAL (i * 1001) MICROSECOND)::TIMESTAMP_NS AS ts_ns,
  CASE WHEN i % 5 = 0 THEN NULL WHEN i % 5 = 1 THEN []::VARCHAR[]
       ELSE ['a' || i, NULL, 'b' || i][1:(i % 3) + 1] END AS tags,
  CASE WHEN i % 9 = 4 THEN NULL WHEN i % 9 = 5 THEN [] ELSE
       [{'role': 'user', 'content': 'question ' || i}, {'role': 'assistant', 'content': CASE WHEN i % 11 = 0 THEN NULL ELSE 'answer ' || i END}] END AS messages,
  CASE WHEN i % 8 = 7 THEN NULL ELSE {'a': CASE WHEN i % 2 = 0 THEN i END, 'b': 'x' || i} END AS st,
  CASE WHEN i % 6 = 0 THEN NULL WHEN i % 6 = 1 THEN MAP {}::MAP(VARCHAR, INTEGER) ELSE MAP {'k' || i: i, 'z': NULL} END AS m,
  CASE WHEN i % 4 = 0 THEN [[1, 2], [], NULL, [NULL, i]] WHEN i % 4 = 1 THEN NULL ELSE [[i]] END AS nested
FROM range(40) r(i)`
await con.run(table)

const codecs = ['uncompressed', 'snappy', 'gzip', 'zstd', 'lz4', 'brotli']
for (const codec of codecs)
  for (const v of ['V1', 'V2']) {
    const file = path.join(out, `duckdb-${codec}-${v.toLowerCase()}.parquet`)
    await con.run(`COPY t TO '${file}' (FORMAT parquet, COMPRESSION ${codec}, PARQUET_VERSION ${v}, ROW_GROUP_SIZE 16)`)
  }

// ------------------------------------------------------------------ parquet-wasm (parquet-rs)
{
  const n = 60
  const ids = Int32Array.from({ length: n }, (_, i) => i)
  const text = Array.from({ length: n }, (_, i) => (i % 10 === 7 ? null : `prefix-shared-${String(i).padStart(4, '0')}-${'y'.repeat(i % 13)}`))
  const many = Array.from({ length: n }, (_, i) => `distinct value number ${i * 7919} ${'z'.repeat(i % 50)}`)
  const big = BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * 1234567890123n - 9000000000000000000n)
  const dbl = Float64Array.from({ length: n }, (_, i) => (i === 5 ? NaN : i === 6 ? Infinity : i === 7 ? -Infinity : i / 3))
  const t = arrow.tableFromArrays({ id: ids, text, many, big, dbl })
  const ipc = arrow.tableToIPC(t, 'stream')
  const variants = [
    ['pw-v2-uncompressed', (b) => b.setWriterVersion(pw.WriterVersion.V2).setCompression(pw.Compression.UNCOMPRESSED)],
    ['pw-v2-zstd-delta', (b) => b.setWriterVersion(pw.WriterVersion.V2).setCompression(pw.Compression.ZSTD)
      .setColumnDictionaryEnabled('text', false).setColumnEncoding('text', pw.Encoding.DELTA_BYTE_ARRAY)
      .setColumnDictionaryEnabled('many', false).setColumnEncoding('many', pw.Encoding.DELTA_LENGTH_BYTE_ARRAY)
      .setColumnDictionaryEnabled('big', false).setColumnEncoding('big', pw.Encoding.DELTA_BINARY_PACKED)
      .setColumnDictionaryEnabled('id', false).setColumnEncoding('id', pw.Encoding.DELTA_BINARY_PACKED)
      .setColumnDictionaryEnabled('dbl', false).setColumnEncoding('dbl', pw.Encoding.BYTE_STREAM_SPLIT)],
    ['pw-v1-lz4raw-fallback', (b) => b.setWriterVersion(pw.WriterVersion.V1).setCompression(pw.Compression.LZ4_RAW)
      .setDictionaryPageSizeLimit(256).setDataPageSizeLimit(128).setWriteBatchSize(8)],
    ['pw-v2-snappy-groups', (b) => b.setWriterVersion(pw.WriterVersion.V2).setCompression(pw.Compression.SNAPPY)
      .setMaxRowGroupSize(7).setDataPageSizeLimit(64).setWriteBatchSize(4)],
  ]
  for (const [name, cfg] of variants) {
    const props = cfg(new pw.WriterPropertiesBuilder()).build()
    const bytes = pw.writeParquet(pw.Table.fromIPCStream(ipc), props)
    fs.writeFileSync(path.join(out, `${name}.parquet`), bytes)
  }
}

// ------------------------------------------------------------------ hyparquet-writer
{
  const n = 30
  const twoMemberGzip = (input) => {
    const h = input.length >> 1
    return Buffer.concat([zlib.gzipSync(input.subarray(0, h)), zlib.gzipSync(input.subarray(h))])
  }
  const brotli = (input) => zlib.brotliCompressSync(input)
  const columns = () => [
    { name: 'prompt', data: Array.from({ length: n }, (_, i) => `Prompt ${i}: say ${'ha'.repeat(i % 5)}`), type: 'STRING', encoding: 'DELTA_BYTE_ARRAY' },
    { name: 'response', data: Array.from({ length: n }, (_, i) => (i === 3 ? null : `Response ${i}`)), type: 'STRING', encoding: 'DELTA_LENGTH_BYTE_ARRAY' },
    { name: 'n32', data: Array.from({ length: n }, (_, i) => (i * 37) % 101 - 50), type: 'INT32', encoding: 'DELTA_BINARY_PACKED' },
    { name: 'n64', data: Array.from({ length: n }, (_, i) => BigInt(i) ** 11n - 7n), type: 'INT64', encoding: 'DELTA_BINARY_PACKED' },
    { name: 'fl', data: Array.from({ length: n }, (_, i) => i / 8), type: 'FLOAT', encoding: 'BYTE_STREAM_SPLIT' },
    { name: 'flag', data: Array.from({ length: n }, (_, i) => (i % 4 === 2 ? null : i % 3 === 0)), type: 'BOOLEAN' },
    { name: 'when', data: Array.from({ length: n }, (_, i) => new Date(Date.UTC(2020, 1, 29, 12, 0, i, i * 3))), type: 'TIMESTAMP' },
  ]
  const files = [
    ['hyw-gzip2', 'GZIP', { GZIP: twoMemberGzip }],
    ['hyw-brotli', 'BROTLI', { BROTLI: brotli }],
    ['hyw-snappy', 'SNAPPY', undefined],
  ]
  for (const [name, codec, compressors] of files) {
    const buf = hw.parquetWriteBuffer({ columnData: columns(), codec, compressors, rowGroupSize: 12, pageSize: 100 })
    fs.writeFileSync(path.join(out, `${name}.parquet`), Buffer.from(buf))
  }
  // a deprecated codec (Hadoop-framed LZ4): the bytes do not matter, the reader must refuse it by name
  const bad = hw.parquetWriteBuffer({ columnData: [{ name: 'text', data: ['a', 'b'], type: 'STRING' }], codec: 'LZ4', compressors: { LZ4: (x) => x } })
  fs.writeFileSync(path.join(out, 'bad-codec-lz4.parquet'), Buffer.from(bad))
}

// ------------------------------------------------------------------ Spark's dictionary placement
// Some writers (Spark's, older parquet-mr) leave dictionary_page_offset unset and point
// data_page_offset at the dictionary page. The same file as parquet-wasm wrote it, with its footer
// re-encoded that way (hyparquet's Thrift decoder, hyparquet-writer's encoder).
{
  const thr = await import(path.join(npm, 'node_modules/hyparquet/src/thrift.js'))
  const thw = await import(path.join(npm, 'node_modules/hyparquet-writer/src/thrift.js'))
  const buf = fs.readFileSync(path.join(out, 'pw-v1-lz4raw-fallback.parquet'))
  const n = buf.readUInt32LE(buf.length - 8)
  const footer = buf.subarray(buf.length - 8 - n, buf.length - 8)
  const meta = thr.deserializeTCompactProtocol({ view: new DataView(footer.buffer, footer.byteOffset, footer.byteLength), offset: 0 })
  let moved = 0
  for (const rg of meta.field_4)
    for (const cc of rg.field_1)
      if (cc.field_3.field_11 !== undefined) {
        cc.field_3.field_9 = cc.field_3.field_11 // data_page_offset := the dictionary page
        delete cc.field_3.field_11
        moved++
      }
  if (moved === 0) throw new Error('no dictionary page to move')
  const w = new hw.ByteWriter()
  thw.serializeTCompactProtocol(w, meta)
  const nf = new Uint8Array(w.getBuffer())
  const len = Buffer.alloc(4)
  len.writeUInt32LE(nf.length)
  fs.writeFileSync(path.join(out, 'pw-spark-dict-placement.parquet'),
    Buffer.concat([buf.subarray(0, buf.length - 8 - n), nf, len, Buffer.from('PAR1')]))
}

// ------------------------------------------------------------------ the JSONL fixtures as Parquet
// tests/fixtures/data/{chat,ift}.jsonl and the .txt documents, converted by DuckDB: the reader
// must give the same samples, token counts and batches as from the JSONL.
{
  const data = path.join(here, '..', 'tests', 'fixtures', 'data')
  await con.run(`COPY (SELECT * FROM read_json('${data}/chat.jsonl', format = 'newline_delimited')) TO '${out}/chat.parquet' (FORMAT parquet, COMPRESSION zstd)`)
  await con.run(`COPY (SELECT * FROM read_json('${data}/ift.jsonl', format = 'newline_delimited')) TO '${out}/ift.parquet' (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2)`)
  await con.run(`COPY (SELECT content AS text FROM read_text('${data}/cpt/**/*.txt') ORDER BY filename) TO '${out}/cpt.parquet' (FORMAT parquet)`)
}

// ------------------------------------------------------------------ expected rows (DuckDB reads)
// DuckDB reads a timestamp annotated only with the legacy converted type TIMESTAMP_MILLIS/MICROS
// as a naive timestamp; parquet-format (LogicalTypes.md, backward compatibility) says those are
// UTC-adjusted, as ftune reads them: such columns get the trailing Z.
function jsonExpr(name, type, legacyUtc) {
  const c = `"${name.replace(/"/g, '""')}"`
  const t = legacyUtc ? 'TIMESTAMP WITH TIME ZONE' : type.toUpperCase()
  if (t === 'FLOAT' || t === 'DOUBLE')
    return `CASE WHEN ${c} IS NULL THEN NULL WHEN isnan(${c}) THEN '"NaN"' WHEN ${c} = 'inf'::DOUBLE THEN '"Infinity"' WHEN ${c} = '-inf'::DOUBLE THEN '"-Infinity"' ELSE to_json(${c}::DOUBLE)::VARCHAR END`
  if (t === 'BLOB') return `'"' || to_base64(${c}) || '"'`
  if (/^DECIMAL\(\d+,\d+\)$/.test(t) || t === 'DATE') return `'"' || ${c}::VARCHAR || '"'`
  if (t === 'TIMESTAMP WITH TIME ZONE')
    return `'"' || strftime(make_timestamp(epoch_us(${c})), '%Y-%m-%dT%H:%M:%S.%f') || 'Z"'`
  if (t.startsWith('TIMESTAMP')) return `'"' || strftime(${c}::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%f') || '"'`
  if (t.startsWith('MAP(')) return `to_json(map_entries(${c}))::VARCHAR`
  return `to_json(${c})::VARCHAR`
}

const summary = []
for (const f of fs.readdirSync(out).filter((f) => f.endsWith('.parquet')).sort()) {
  if (f.startsWith('bad-')) continue
  const file = path.join(out, f)
  const desc = await (await con.run(`DESCRIBE SELECT * FROM read_parquet('${file}')`)).getRowObjectsJS()
  const schema = await (await con.run(`SELECT name, converted_type, logical_type FROM parquet_schema('${file}')`)).getRowObjectsJS()
  const legacy = new Set(schema.filter((s) => /^TIMESTAMP_/.test(s.converted_type ?? '') && !s.logical_type).map((s) => s.name))
  const exprs = desc.map((d) => `${jsonExpr(d.column_name, d.column_type, legacy.has(d.column_name))} AS "${d.column_name}"`)
  // rows in file order
  const rows = await (await con.run(`SELECT ${exprs.join(', ')} FROM read_parquet('${file}', file_row_number = true) ORDER BY file_row_number`)).getRowObjectsJS()
  const lines = rows.map((r) => '{' + desc.map((d) => `${JSON.stringify(d.column_name)}:${r[d.column_name] ?? 'null'}`).join(',') + '}')
  fs.writeFileSync(path.join(out, f.replace(/\.parquet$/, '.expected.jsonl')), lines.join('\n') + '\n')
  summary.push(`${f}: ${rows.length} rows, ${desc.length} columns`)
}
console.log(summary.join('\n'))
