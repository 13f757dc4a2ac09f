// tools/parquet-check.mjs: compare `ftune data head` with DuckDB on any Parquet files, e.g. every
// file of the Delta golden tables (Spark- and delta-rs-written):
//
//   find ../shared/refs/delta -name '*.parquet' > /tmp/files.txt
//   node tools/parquet-check.mjs /tmp/files.txt [build/ftune]
//
// DuckDB reads each file (no hive partitions from the path) and its rows are formatted by SQL with
// the value mapping of docs/data.md, as tools/parquet-fixtures.mjs does; rows must be equal value by
// value (numbers within 1e-6 relative, for float32). Prints one line per differing file and a
// summary. Binary values nested in lists or structs are reported apart: DuckDB's to_json writes
// them escaped, not in base64, so those columns cannot be compared this way.
import { createRequire } from 'node:module'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(path.join(here, 'npm', 'package.json'))
const duck = require('@duckdb/node-api')
const files = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean)
const ftune = process.argv[3] || path.join(here, '..', 'build', 'ftune')

const db = await duck.DuckDBInstance.create(':memory:')
const con = await db.connect()

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

// a: ftune's value, b: DuckDB's. Inside lists and structs DuckDB's to_json writes maps as objects,
// decimals as numbers and blobs escaped (only top-level columns get the exact SQL formatting), so
// nested values compare through those forms; `loose` counts how often that was needed.
let loose = 0
function same(a, b) {
  if (typeof a === 'string' && typeof b === 'number' && a !== '' && !isNaN(Number(a))) {
    loose++
    return same(Number(a), b)
  }
  if (Array.isArray(a) && b && typeof b === 'object' && !Array.isArray(b) &&
      a.every((e) => e && typeof e === 'object' && Object.keys(e).join() === 'key,value')) {
    loose++
    return same(Object.fromEntries(a.map((e) => [String(e.key), e.value])), b)
  }
  if (typeof a === 'number' && typeof b === 'number')
    return a === b || Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b))
  if (Array.isArray(a) || Array.isArray(b))
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]))
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a), kb = Object.keys(b)
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]))
  }
  return a === b
}

let equal = 0, differ = 0, nestedBinary = 0, duckFailed = 0
for (const file of files) {
  const q = file.replace(/'/g, "''")
  let desc, rows
  try {
    desc = await (await con.run(`DESCRIBE SELECT * FROM read_parquet('${q}', hive_partitioning = false)`)).getRowObjectsJS()
    const schema = await (await con.run(`SELECT name, converted_type, logical_type FROM parquet_schema('${q}')`)).getRowObjectsJS()
    const legacy = new Set(schema.filter((s) => /^TIMESTAMP_/.test(s.converted_type ?? '') && !s.logical_type).map((s) => s.name))
    const exprs = desc.map((d) => `${jsonExpr(d.column_name, d.column_type, legacy.has(d.column_name))} AS "${d.column_name.replace(/"/g, '""')}"`)
    rows = await (await con.run(`SELECT ${exprs.join(', ')} FROM read_parquet('${q}', file_row_number = true, hive_partitioning = false) ORDER BY file_row_number`)).getRowObjectsJS()
  } catch (e) {
    duckFailed++
    console.log(`${file}: DuckDB cannot read it: ${String(e).split('\n')[0]}`)
    continue
  }
  const want = rows.map((r) => JSON.parse('{' + desc.map((d) => `${JSON.stringify(d.column_name)}:${r[d.column_name] ?? 'null'}`).join(',') + '}'))
  const run = spawnSync(ftune, ['data', 'head', file, '--limit', '-1'], { encoding: 'utf8', maxBuffer: 1 << 30 })
  if (run.status !== 0) {
    differ++
    console.log(`${file}: ftune failed: ${run.stderr.trim()}`)
    continue
  }
  const got = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const nested = desc.filter((d) => /BLOB/.test(d.column_type) && d.column_type !== 'BLOB').map((d) => d.column_name)
  let bad = got.length !== want.length ? `${got.length} rows, DuckDB ${want.length}` : ''
  for (let i = 0; !bad && i < got.length; i++)
    for (const d of desc)
      if (!nested.includes(d.column_name) && !same(got[i][d.column_name], want[i][d.column_name])) {
        bad = `row ${i} column ${d.column_name}: ftune ${JSON.stringify(got[i][d.column_name])} DuckDB ${JSON.stringify(want[i][d.column_name])}`
        break
      }
  if (bad) {
    differ++
    console.log(`${file}: ${bad}`)
  } else {
    equal++
    if (nested.length) nestedBinary++
  }
}
console.log(`${equal} files equal (${nestedBinary} of them with nested binary columns not compared; ${loose} nested maps/decimals compared in DuckDB's form), ${differ} differ, ${duckFailed} unreadable by DuckDB, of ${files.length}`)
process.exit(differ ? 1 : 0)
