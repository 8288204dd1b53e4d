/**
 * `runledger completions bash|zsh|fish`: the shell completion script @effect/cli
 * generates for the whole command tree (the same as the built-in `--completions`).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { Effect } from "effect"
import { printHuman } from "./common.js"

const SHELLS = ["bash", "zsh", "fish"] as const
type Shell = (typeof SHELLS)[number]

const shellArg = Args.choice(SHELLS.map((s) => [s, s] as const), { name: "SHELL" }).pipe(
  Args.withDescription("The shell to complete for: bash, zsh or fish")
)

/** Set by main.ts once the command tree exists (the script describes the whole tree, this command included). */
let tree: Command.Command<"runledger", never, unknown, unknown> | undefined

export const setCompletionTree = <R, E, A>(root: Command.Command<"runledger", R, E, A>) => {
  tree = root as unknown as Command.Command<"runledger", never, unknown, unknown>
}

const script = (shell: Shell) =>
  Effect.suspend(() => {
    const root = tree!
    return shell === "bash"
      ? Command.getBashCompletions(root, "runledger")
      : shell === "zsh"
      ? Command.getZshCompletions(root, "runledger")
      : Command.getFishCompletions(root, "runledger")
  })

export const completionsCommand = Command.make("completions", { shell: shellArg }, ({ shell }) =>
  script(shell).pipe(Effect.flatMap((lines) => printHuman(lines.join("\n"))))).pipe(
    Command.withDescription(
      "Print a shell completion script for runledger on stdout: its commands, options and choices. Load it from your " +
        "shell's completion directory (see EXAMPLES), or for the current shell: source <(runledger completions bash)."
    )
  )
