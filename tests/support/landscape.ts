import { Layer } from "effect"
import { SqliteLandscape } from "../../src/landscape/sqlite.js"

/** A fresh in-memory Landscape (Recorder + SqlClient) per use. */
export const MemoryLandscape = () => SqliteLandscape(":memory:").pipe(Layer.orDie)
