import { Effect } from "effect"
import { coerceSourceRow, parseSchemaConfig } from "./src/pipeline/plugins/schema.js"
const schema = Effect.runSync(parseSchemaConfig("x", { mode: "fixed", fields: ["id: int", "name: str", "amount: float"] }))
const rows = Array.from({ length: 200000 }, (_, i) => ({ id: String(i), name: `name ${i}`, amount: `${i % 1000}.5` }))
let t = Date.now()
let ok = 0
for (const r of rows) if (coerceSourceRow(schema, r).ok) ok++
console.log("coerce", ok, Date.now() - t)
