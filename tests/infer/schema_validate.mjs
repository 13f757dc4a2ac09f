// tests/infer/schema_validate.mjs: the independent check of constrained decoding. Reads JSON
// lines {"schema": ..., "text": "...", "finish": "stop"|"length"} (written by the infer tests)
// and validates every finished text against its schema with Ajv (JSON Schema 2020-12) and
// ajv-formats, pinned in tools/npm. Prints one line per failure and a summary; exits 1 on any
// failure: a text that does not parse, or does not validate.
// Usage: node tests/infer/schema_validate.mjs FILE.jsonl
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../tools/npm/package.json'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default ?? require('ajv-formats');

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const compiled = new Map();
let checked = 0, failed = 0, cut = 0;
for (const line of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const { schema, text, finish } = JSON.parse(line);
  if (finish !== 'stop') { cut++; continue; }
  const key = JSON.stringify(schema);
  if (!compiled.has(key)) compiled.set(key, ajv.compile(schema));
  const validate = compiled.get(key);
  checked++;
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    failed++;
    console.log(`NOT JSON: ${JSON.stringify(text)} for ${key}: ${e.message}`);
    continue;
  }
  if (!validate(value)) {
    failed++;
    console.log(`INVALID: ${JSON.stringify(text)} for ${key}: ${ajv.errorsText(validate.errors)}`);
  }
}
console.log(`schema_validate: ${checked - failed} of ${checked} finished texts valid (${cut} cut by length)`);
process.exit(failed ? 1 : 0);
