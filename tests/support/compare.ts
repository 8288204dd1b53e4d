import { parse } from "csv-parse/sync"

/** A cell as a comparable value: numbers compared as numbers. */
const norm = (v: unknown): unknown => {
  if (typeof v === "string" && v.trim() !== "" && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v.trim())) return Number(v)
  if (Array.isArray(v)) return v.map(norm)
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]))
  return v
}

/** Rows of a CSV text (CRLF/LF ignored), with numbers normalized. */
export const csvRows = (text: string): Array<Record<string, unknown>> =>
  (parse(text, { columns: true, skip_empty_lines: true }) as Array<Record<string, unknown>>).map((r) => norm(r) as Record<string, unknown>)

/** Rows of a JSON array or JSONL text, with numbers normalized. */
export const jsonRows = (text: string): Array<unknown> => {
  const t = text.trim()
  if (t.startsWith("[")) return (JSON.parse(t) as Array<unknown>).map(norm)
  return t.split(/\r?\n/).filter((l) => l.trim() !== "").map((l) => norm(JSON.parse(l)))
}

export const rowsOf = (path: string, text: string): Array<unknown> => (path.endsWith(".csv") ? csvRows(text) : jsonRows(text))
