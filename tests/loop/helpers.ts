import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export const FIXTURES = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "../fixtures/loop")

/** `bash <fixture>` so the tests do not depend on the exec bit surviving. */
export const fixture = (name: string, ...args: Array<string>) =>
  ["bash", JSON.stringify(NodePath.join(FIXTURES, name)), ...args.map((a) => JSON.stringify(a))].join(" ")

export const tempDir = (prefix = "runledger-loop-") => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), prefix))

export const isAlive = (pid: number): boolean => {
  try {
    const stat = NodeFs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

export const git = (cwd: string, ...args: Array<string>) =>
  execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim()

/** A fresh git repository with one commit. */
export const makeRepo = (): string => {
  const dir = tempDir("runledger-repo-")
  git(dir, "init", "-q", "-b", "main")
  git(dir, "config", "user.name", "Loop Test")
  git(dir, "config", "user.email", "loop@test.invalid")
  NodeFs.writeFileSync(NodePath.join(dir, "README.md"), "test repo\n")
  git(dir, "add", "README.md")
  git(dir, "commit", "-q", "-m", "initial")
  return dir
}

export const readPids = (file: string): Array<number> =>
  NodeFs.existsSync(file)
    ? NodeFs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "").map(Number)
    : []
