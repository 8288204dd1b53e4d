// `npm run demo:llm`: starts the bundled fake OpenAI-compatible server, runs
// examples/llm/settings.yaml against it, explains one row, and stops the server.
import { spawn, spawnSync } from "node:child_process"
import { rmSync } from "node:fs"

const bin = new URL("../dist/bin.js", import.meta.url).pathname
const server = spawn(process.execPath, [bin, "dev", "fake-llm", "--port", "0", "--latency-ms", "20"], { stdio: ["ignore", "pipe", "inherit"] })
const baseUrl = await new Promise((resolve, reject) => {
  let out = ""
  server.on("error", reject)
  server.on("exit", (code) => reject(new Error(`the fake server exited (${code}) before listening`)))
  server.stdout.setEncoding("utf8").on("data", (d) => {
    out += d
    if (out.includes("\n")) resolve(out.split("\n")[0].trim())
  })
})
let status = 1
try {
  for (const path of ["examples/llm/output", "examples/llm/runs", "examples/llm/payloads"]) rmSync(path, { recursive: true, force: true })
  const env = { ...process.env, LLM_BASE_URL: baseUrl }
  const run = spawnSync(process.execPath, [bin, "run", "-s", "examples/llm/settings.yaml"], { stdio: "inherit", env })
  status = run.status ?? 1
  if (status === 0) {
    console.log("\n$ runledger explain --db examples/llm/runs/audit.db --run latest --row 1")
    spawnSync(process.execPath, [bin, "explain", "--db", "examples/llm/runs/audit.db", "--run", "latest", "--row", "1"], { stdio: "inherit", env })
  }
} finally {
  server.removeAllListeners("exit")
  server.kill("SIGTERM")
}
process.exit(status)
