/**
 * Every config and issues-file mistake reads `FILE: KEY = VALUE: MESSAGE` with the key in
 * one path style (`a.b[0].c`) and the allowed values spelled out — never Schema's type
 * algebra (`Expected { readonly ref: NonEmptyString }`, `(number | string <-> number)`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { formatLoopConfigError, parseLoopConfig } from "../../src/loop/config.js"
import { formatIssueSourceError, parseIssueFile } from "../../src/loop/issues.js"

const FILE = "/cfg/loop.yaml"
const base = { implementer: { command: "impl" }, commands: { test: "npm test", lint: "npm run lint" } }

const configMessage = (doc: Record<string, unknown>): string => {
  const result = parseLoopConfig(doc, FILE, "/cfg")
  if (Either.isRight(result)) throw new Error(`expected an error for ${JSON.stringify(doc)}`)
  return formatLoopConfigError(result.left)
}

const trigger = (name: "session_end" | "run_end", body: Record<string, unknown>) => ({
  ...base,
  validation_triggers: { [name]: body }
})

const configCases: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
  [
    "a literal outside its set",
    trigger("run_end", { fire_on: "all" }),
    "validation_triggers.run_end.fire_on = all: expected one of success, failure, both"
  ],
  [
    "an unknown failure mode",
    trigger("session_end", { failure_mode: "retry" }),
    "validation_triggers.session_end.failure_mode = retry: expected one of abort, continue, remediate"
  ],
  [
    "a misspelt key inside a command item",
    trigger("session_end", { commands: [{ rf: "test" }] }),
    "validation_triggers.session_end.commands[0].rf = test: unknown key; allowed keys: ref, command, timeout, allow_fail"
  ],
  [
    "a number as a command item",
    trigger("session_end", { commands: [5] }),
    "validation_triggers.session_end.commands[0] = 5: expected a command name or a mapping {ref: name} or {command: ...}"
  ],
  [
    "a ref of the wrong type",
    trigger("run_end", { commands: [{ ref: 5 }] }),
    "validation_triggers.run_end.commands[0].ref = 5: expected a string"
  ],
  [
    "a ref to an undefined command (mapping form)",
    trigger("session_end", { commands: ["test", { ref: "tset" }] }),
    "validation_triggers.session_end.commands[1].ref = tset: refers to undefined command \"tset\"; defined commands: test, lint"
  ],
  [
    "a ref to an undefined command (name form)",
    { ...base, gate: { commands: ["test", "nope"] } },
    "gate.commands[1] = nope: refers to undefined command \"nope\"; defined commands: test, lint"
  ],
  [
    "a timeout on a reference",
    { ...base, gate: { commands: [{ ref: "test", timeout: "5s" }] } },
    "gate.commands[0] = {\"ref\":\"test\",\"timeout\":5000}: timeout and allow_fail belong to the command's definition under `commands.test` (or give an inline `command`)"
  ],
  [
    "an empty command item",
    { ...base, gate: { commands: [{}] } },
    "gate.commands[0] = {}: needs `ref` (the name of a command under `commands`) or `command`"
  ],
  ["a string where a list goes", { ...base, gate: { commands: "test" } }, "gate.commands = test: expected a list"],
  ["a number where a mapping goes", { ...base, gate: 5 }, "gate = 5: expected a mapping"],
  ["a negative retry count", { ...base, gate: { max_retries: -1 } }, "gate.max_retries = -1: expected a non-negative integer"],
  ["zero agents", { ...base, max_agents: 0 }, "max_agents = 0: expected a positive integer"],
  ["agents as a word", { ...base, max_agents: "two" }, "max_agents = two: expected a positive integer"],
  [
    "an unreadable duration",
    trigger("session_end", { timeout: "2 days" }),
    "validation_triggers.session_end.timeout = 2 days: expected a duration such as 500ms, 2s, 10m, 1h or a number of seconds"
  ],
  [
    "a duration of the wrong type",
    { ...base, kill_grace: true },
    "kill_grace = true: expected a duration such as 500ms, 2s, 10m, 1h or a number of seconds"
  ],
  ["a command of the wrong type", { ...base, implementer: { command: 5 } }, "implementer.command = 5: expected a string"],
  ["an empty command", { ...base, implementer: { command: "" } }, "implementer.command = \"\": must not be empty"],
  ["a missing implementer", { commands: {} }, "implementer: is required"],
  [
    "a named command of the wrong type",
    { ...base, commands: { test: 5 } },
    "commands.test = 5: expected a command string or a mapping {command, timeout, allow_fail}"
  ],
  [
    "a non-boolean allow_fail",
    { ...base, commands: { test: { command: "npm test", allow_fail: "yes" } } },
    "commands.test.allow_fail = yes: expected true or false"
  ],
  [
    "a finding threshold outside its set",
    { ...base, reviewer: { command: "review", finding_threshold: "P9" } },
    "reviewer.finding_threshold = P9: expected one of P0, P1, P2, P3"
  ],
  [
    "an unknown top-level key",
    { ...base, max_agent: 2 },
    "max_agent = 2: unknown key; allowed keys: repo, issues, beads, workdir, max_agents, kill_grace, keep_worktrees, " +
    "implementer, commands, gate, validation_triggers, fixer, reviewer, finalize, integration, telemetry"
  ]
]

const issueCases: ReadonlyArray<readonly [string, string, string]> = [
  [
    "depends_on an unknown id",
    "- {id: A-1, title: one}\n- {id: A-2, title: two, depends_on: [A-1, A-9]}\n",
    "issues.yaml: [1].depends_on[1] = A-9: issue \"A-2\" depends on unknown issue \"A-9\"; known ids: A-1, A-2"
  ],
  [
    "depends_on an unknown id under an issues: key",
    "issues:\n  - {id: 1, title: one, depends_on: [7]}\n",
    "issues.yaml: issues[0].depends_on[0] = 7: issue \"1\" depends on unknown issue \"7\"; known ids: 1"
  ],
  [
    "a missing title",
    "- {id: A-1, title: one}\n- {id: A-2}\n",
    "issues.yaml: [1].title: is required"
  ],
  [
    "an unknown key in an issue",
    "- {id: A-1, title: one, dependson: [A-2]}\n",
    "issues.yaml: [0].dependson = [\"A-2\"]: unknown key; allowed keys: id, title, body, priority, depends_on"
  ],
  [
    "an id of the wrong type",
    "- {id: [1], title: one}\n",
    "issues.yaml: [0].id = [1]: expected an issue id (a non-empty string or an integer)"
  ],
  [
    "a duplicate id",
    "- {id: A-1, title: one}\n- {id: A-1, title: again}\n",
    "issues.yaml: [1].id = A-1: duplicate issue id \"A-1\" (also [0])"
  ],
  [
    "not a list",
    "title: one\n",
    "issues.yaml: (root) = {\"title\":\"one\"}: expected a list of issues {id, title, body, priority, depends_on} " +
    "(or a mapping with an `issues:` list)"
  ]
]

describe("loop config errors", () => {
  for (const [name, doc, message] of configCases) {
    it(name, () => {
      const text = configMessage(doc)
      expect(text).toBe(`${FILE}: ${message}`)
      expect(text).not.toMatch(/Expected|<->|readonly/)
    })
  }

  it("the three list forms resolve to the same commands, in gate and triggers alike", () => {
    const config = Either.getOrThrow(parseLoopConfig(
      {
        ...base,
        gate: { commands: ["test", { ref: "lint" }, { command: "make check", timeout: "1s", allow_fail: true }] },
        validation_triggers: { session_end: { commands: ["test", { ref: "lint" }, { ref: "types", command: "tsc" }] } }
      },
      FILE,
      "/cfg"
    ))
    expect(config.gate.commands).toEqual([
      { ref: "test", command: "npm test", timeoutMs: undefined, allowFail: false },
      { ref: "lint", command: "npm run lint", timeoutMs: undefined, allowFail: false },
      { ref: "gate-3", command: "make check", timeoutMs: 1000, allowFail: true }
    ])
    expect(config.sessionEnd?.commands.map((c) => [c.ref, c.command])).toEqual([
      ["test", "npm test"],
      ["lint", "npm run lint"],
      ["types", "tsc"]
    ])
  })
})

describe("issues file errors", () => {
  for (const [name, text, message] of issueCases) {
    it(name, () => {
      const result = parseIssueFile(text, "issues.yaml")
      if (Either.isRight(result)) throw new Error("expected an error")
      const line = formatIssueSourceError(result.left)
      expect(line).toBe(message)
      expect(line).not.toMatch(/Expected|<->|readonly/)
    })
  }
})
