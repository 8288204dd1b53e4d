/**
 * How the CLI's help and parse errors read: @effect/cli renders them; this Console
 * puts them in runledger's words before they are printed. Usage lines name the
 * program (`$ runledger export …`, not `$ export …`), the generic type notes
 * ("A user-defined piece of text.") that precede every option's own description are
 * left out, each command's help ends with EXAMPLES, and escape sequences are written
 * only to a terminal without NO_COLOR (a pipe, a file or NO_COLOR gets plain text).
 */
import type * as Descriptor from "@effect/cli/CommandDescriptor"
import { type Console, Effect } from "effect"
import { ansiAllowed } from "../services/telemetry.js"

/** Examples per command path (`""` is the root); shown at the end of its --help. */
export const EXAMPLES: Readonly<Record<string, ReadonlyArray<string>>> = {
  "": [
    "runledger run -s examples/demo/settings.yaml",
    "runledger runs --db examples/demo/runs/demo.db",
    "runledger explain --db examples/demo/runs/demo.db --run latest --row 5",
    "runledger <command> --help"
  ],
  run: [
    "runledger run -s settings.yaml",
    "runledger run -s settings.yaml --db sqlite:///runs/audit.db --json > result.json",
    "runledger run -s settings.yaml --dry-run"
  ],
  resume: ["runledger resume latest -s settings.yaml", "runledger resume run_01a2… -s settings.yaml --dry-run"],
  validate: ["runledger validate -s settings.yaml", "runledger validate -s settings.yaml --graph mermaid > dag.mmd"],
  runs: ["runledger runs --db runs/audit.db", "runledger runs --db runs/audit.db | grep failed", "runledger runs --db runs/audit.db --json"],
  explain: [
    "runledger explain --db runs/audit.db --run latest --row 0          # the first source row (0-based)",
    "runledger explain --db runs/audit.db --run latest --row row_01a2…  # a row id",
    "runledger explain --db runs/audit.db --run run_01a2… --token tok_01a2… --json > lineage.json"
  ],
  export: [
    "runledger export --db runs/audit.db --run latest --out trail.json",
    "RUNLEDGER_SIGNING_KEY=… runledger export --db runs/audit.db --run latest --out trail.json --sign",
    "runledger export --db runs/audit.db --run latest --format csv --out trail-csv/"
  ],
  verify: ["RUNLEDGER_SIGNING_KEY=… runledger verify trail.json"],
  plugins: ["runledger plugins", "runledger plugins --type transform", "runledger plugins --json"],
  "plugins list": ["runledger plugins list --type sink"],
  "migrate-settings": ["runledger migrate-settings old-settings.yaml", "runledger migrate-settings old-settings.yaml --output settings.yaml"],
  loop: ["runledger loop -c loop.yaml", "runledger loop -c loop.yaml --issues issues.yaml --max-agents 4 --db runs/loop.db"],
  "loop status": ["runledger loop status --db runs/loop.db", "runledger loop status --db runs/loop.db --run latest --json"],
  "loop logs": ["runledger loop logs --db runs/loop.db ISSUE-1", "runledger loop logs --db runs/loop.db --stage gate ISSUE-1"],
  serve: [
    "runledger serve --db examples/demo/runs/demo.db",
    "runledger serve --db runs/audit.db --port 8080",
    "RUNLEDGER_SERVE_TOKEN=… runledger serve --db runs/audit.db --host 0.0.0.0   # other machines need the token"
  ],
  mcp: ["runledger mcp --db examples/demo/runs/demo.db   # started by an MCP client, which speaks JSON-RPC on its stdin"],
  purge: [
    "runledger purge --db runs/audit.db --retention-days 30 --dry-run",
    "runledger purge --db runs/audit.db --payload-dir .elspeth/payloads --retention-days 30 --yes"
  ],
  dev: ["runledger dev fake-llm --port 8199"],
  "dev fake-llm": [
    "runledger dev fake-llm --port 8199",
    "runledger dev fake-llm --port 8199 --latency-ms 50 --fault-rate 0.2 --seed 7"
  ],
  completions: [
    "runledger completions bash > ~/.local/share/bash-completion/completions/runledger",
    "runledger completions zsh > \"${fpath[1]}/_runledger\"",
    "runledger completions fish > ~/.config/fish/completions/runledger.fish"
  ]
}

/** The type notes @effect/cli puts before an option's own description. */
const TYPE_NOTES = new Set(["A user-defined piece of text.", "A true or false value.", "A user-defined piece of text that is confidential."])

const ANSI = /\x1b\[[0-9;]*m/g

export const stripAnsi = (text: string): string => text.replace(ANSI, "")

/**
 * The command path `args` asks help for: the leading words that name subcommands of
 * `root` in turn (`loop status --help` → `loop status`; `resume latest` → `resume`).
 */
export const commandPath = (root: Descriptor.Command<unknown>, args: ReadonlyArray<string>): string => {
  const words: Array<string> = []
  let current: Node = root as unknown as Node
  for (const a of args) {
    if (a.startsWith("-")) break
    const next = childrenOf(current).get(a)
    if (next === undefined) break
    words.push(a)
    current = next
  }
  return words.join(" ")
}

/**
 * The descriptor tree as @effect/cli builds it (`Standard`/`GetUserInput` leaves,
 * `Map` wrappers, `Subcommands` with a parent and children). Its public
 * getSubcommands reaches one level only, so nested commands (`loop status`) are
 * found by walking the tree.
 */
type Node =
  | { readonly _tag: "Standard" | "GetUserInput"; readonly name: string }
  | { readonly _tag: "Map"; readonly command: Node }
  | { readonly _tag: "Subcommands"; readonly parent: Node; readonly children: ReadonlyArray<Node> }

const nameOf = (node: Node): string =>
  node._tag === "Map" ? nameOf(node.command) : node._tag === "Subcommands" ? nameOf(node.parent) : node.name

const childrenOf = (node: Node): ReadonlyMap<string, Node> =>
  node._tag === "Map"
    ? childrenOf(node.command)
    : node._tag === "Subcommands"
    ? new Map(node.children.map((c) => [nameOf(c), c] as const))
    : new Map()

const isHelp = (plain: string) => /^USAGE$/m.test(plain) && /^\$ /m.test(plain)

/** The help text in runledger's words (still with escapes when `color`). */
export const rewriteHelp = (text: string, path: string, color: boolean): string => {
  const lines = (color ? text : stripAnsi(text)).split("\n")
  const out: Array<string> = []
  const prefix = path === "" ? "runledger" : `runledger ${path}`
  const leaf = path.split(" ").at(-1) ?? ""
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const plain = stripAnsi(line)
    if (TYPE_NOTES.has(plain.trim()) && plain.startsWith("  ")) {
      // The note and the blank line after it.
      if (stripAnsi(lines[i + 1] ?? "").trim() === "") i++
      continue
    }
    if (plain.startsWith("$ ") && leaf !== "" && (plain === `$ ${leaf}` || plain.startsWith(`$ ${leaf} `))) {
      out.push(`$ ${prefix}${plain.slice(2 + leaf.length)}`)
      continue
    }
    out.push(line)
  }
  const examples = EXAMPLES[path] ?? []
  let result = out.join("\n").replace(/\n+$/, "")
  if (examples.length > 0) {
    const header = color ? "\x1b[0;1mEXAMPLES\x1b[0m" : "EXAMPLES"
    result += `\n\n${header}\n\n${examples.map((e) => `  $ ${e}`).join("\n")}\n`
  }
  return result
}

/**
 * The Console the CLI runs with: help (printed by @effect/cli through Console.log)
 * rewritten for `args`; escape sequences dropped from anything printed to a stream
 * that is no terminal or when NO_COLOR is set.
 */
export const withCliConsole = <A, E, R>(
  root: Descriptor.Command<unknown>,
  args: ReadonlyArray<string>,
  effect: Effect.Effect<A, E, R>
) =>
  Effect.flatMap(Effect.console, (base) => {
    const path = commandPath(root, args)
    const render = (stream: NodeJS.WriteStream, parts: ReadonlyArray<unknown>) => {
      const color = ansiAllowed(stream)
      const text = parts.map((p) => (typeof p === "string" ? p : String(p))).join(" ")
      if (isHelp(stripAnsi(text))) return rewriteHelp(text, path, color)
      return color ? text : stripAnsi(text)
    }
    const console: Console.Console = {
      ...base,
      log: (...parts: ReadonlyArray<unknown>) => base.log(render(process.stdout, parts)),
      error: (...parts: ReadonlyArray<unknown>) => base.error(render(process.stderr, parts)),
      unsafe: {
        ...base.unsafe,
        log: (...parts: ReadonlyArray<unknown>) => base.unsafe.log(render(process.stdout, parts)),
        error: (...parts: ReadonlyArray<unknown>) => base.unsafe.error(render(process.stderr, parts))
      }
    }
    return Effect.withConsole(effect, console)
  })
