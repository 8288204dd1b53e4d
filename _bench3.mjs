import { parse } from "csv-parse"
import { Readable, pipeline } from "node:stream"
import fs from "node:fs"
async function* bytes() { for await (const c of fs.createReadStream("/tmp/rl/big.csv")) yield c }
const variants = {
  plain: {},
  full: { record_delimiter: ["\r\n", "\n", "\r"], relax_column_count: true, relax_quotes: true, skip_empty_lines: true, skip_records_with_error: true },
  onrec: { record_delimiter: ["\r\n", "\n", "\r"], relax_column_count: true, relax_quotes: true, skip_empty_lines: true, skip_records_with_error: true, on_record: (r, c) => ({ r, l: c.lines }) },
  info: { record_delimiter: ["\r\n", "\n", "\r"], relax_column_count: true, relax_quotes: true, skip_empty_lines: true, skip_records_with_error: true, info: true },
  raw: { record_delimiter: ["\r\n", "\n", "\r"], relax_column_count: true, relax_quotes: true, skip_empty_lines: true, skip_records_with_error: true, raw: true },
  nodelim: { relax_column_count: true, relax_quotes: true, skip_empty_lines: true, skip_records_with_error: true, on_record: (r, c) => ({ r, l: c.lines }) },
}
for (const [name, extra] of Object.entries(variants)) {
  const t = Date.now(); let n = 0
  const p = parse({ encoding: null, ...extra })
  pipeline(Readable.from(bytes(), { objectMode: false }), p, () => {})
  for await (const r of p) n++
  console.log(name, n, Date.now() - t)
}
