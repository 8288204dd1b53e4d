import { Effect, Stream } from "effect"
import { csvSource } from "./src/pipeline/plugins/sources/csv.js"
const run = async (schema: unknown) => {
  const src = Effect.runSync(csvSource.create({ path: "/tmp/rl/big.csv", schema, on_validation_failure: "discard" }, { nodeName: "s" }))
  const t = Date.now()
  const n = await Effect.runPromise(Stream.runCount(src.read))
  console.log(n, Date.now() - t, "ms")
}
await run({ mode: "observed" })
await run({ mode: "fixed", fields: ["id: int", "name: str", "amount: float"] })
