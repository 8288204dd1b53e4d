/** The built-in sinks. */
import type { SinkPlugin } from "../protocol.js"
import { csvSink } from "./csv.js"
import { databaseSink } from "./database.js"
import { jsonSink } from "./json.js"

export { csvSink } from "./csv.js"
export { databaseSink } from "./database.js"
export { jsonSink } from "./json.js"

export const builtinSinks: ReadonlyArray<SinkPlugin> = [csvSink, jsonSink, databaseSink]
