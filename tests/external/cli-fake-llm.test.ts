/**
 * `runledger dev fake-llm` as users run it (the built CLI): prints its base URL on
 * stdout, answers, and stops on SIGTERM (exit 0) and SIGINT (exit 130).
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { BIN, REPO, runCli } from "../support/cli.js"

interface Started {
  readonly child: ChildProcess
  readonly baseUrl: string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>
}

const startCli = (args: ReadonlyArray<string>): Promise<Started> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "dev", "fake-llm", "--port", "0", ...args], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((done) =>
      child.on("close", (code, signal) => done({ code, signal, stderr }))
    )
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      stdout += d
      const line = stdout.split("\n")[0]
      if (stdout.includes("\n")) resolve({ child, baseUrl: line!, exited })
    })
    child.on("error", reject)
    void exited.then((e) => reject(new Error(`fake-llm exited before printing its URL (${e.code}): ${e.stderr}`)))
  })

const complete = async (baseUrl: string, content: string) => {
  const res = await fetch(`${baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "demo", messages: [{ role: "user", content }] })
  })
  return { status: res.status, body: await res.text() }
}

describe("runledger dev fake-llm", () => {
  it("prints its base URL, answers deterministically, and stops on SIGTERM with exit 0", async () => {
    const a = await startCli(["--seed", "3"])
    assert.match(a.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1$/)
    const r1 = await complete(a.baseUrl, "what a great day")
    const r2 = await complete(a.baseUrl, "what a great day")
    assert.strictEqual(r1.status, 200)
    assert.strictEqual(r1.body, r2.body)
    assert.match(JSON.parse(r1.body).choices[0].message.content, /positive/)
    a.child.kill("SIGTERM")
    const end = await a.exited
    assert.strictEqual(end.code, 0)
    assert.match(end.stderr, /stopped after 2 requests/)
    const after = await complete(a.baseUrl, "again").then(() => "answered", (e: Error) => e.message)
    assert.strictEqual(after, "fetch failed")
  })

  it("injects the faults it is given, and SIGINT stops it with exit 130", async () => {
    const s = await startCli(["--rate-limit-rate", "1", "--retry-after-seconds", "7"])
    const res = await fetch(`${s.baseUrl}/echo`, { method: "POST", body: "{}" })
    assert.strictEqual(res.status, 429)
    assert.strictEqual(res.headers.get("retry-after"), "7")
    s.child.kill("SIGINT")
    assert.strictEqual((await s.exited).code, 130)
  })

  it("refuses fault rates outside 0..1 or adding up to more than 1, with exit 2", () => {
    const bad = runCli(["dev", "fake-llm", "--server-error-rate", "1.5"])
    assert.strictEqual(bad.status, 2)
    assert.include(bad.stderr, "--server-error-rate: 1.5 is not between 0 and 1")
    const sum = runCli(["dev", "fake-llm", "--server-error-rate", "0.6", "--timeout-rate", "0.6"])
    assert.strictEqual(sum.status, 2)
    assert.include(sum.stderr, "add up to 1.2")
    const shared = runCli(["dev", "fake-llm", "--fault-rate", "0.6", "--timeout-rate", "0.6"])
    assert.strictEqual(shared.status, 2)
    // 0.6 / 6 for each of the five other kinds, plus 0.6.
    assert.include(shared.stderr, "add up to 1.1")
  })
})
