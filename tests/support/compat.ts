/**
 * Where the external ELSPETH compatibility corpora are, if anywhere.
 *
 * The corpora (ELSPETH's example settings, inputs and reference notes) are not part of
 * this repository. They are looked for in `RUNLEDGER_COMPAT_DIR` when that is set,
 * otherwise in `../shared/compat` beside the checkout: `elspeth/` holds the
 * February-2026 form, `elspeth-head/` ELSPETH's current form (explicit `input` /
 * `on_success` wiring). Tests that need a corpus run when it is there and are skipped
 * otherwise, with a line on the test output saying what was skipped and why (see
 * `compatSkipNotice` / `compatHeadSkipNotice`). Nothing else in the suite may depend on
 * them.
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const REPO = resolve(__dirname, "../..")

/** The corpus root (holding `elspeth/` and `elspeth-head/`), whether or not it exists. */
export const COMPAT_ROOT = resolve(process.env.RUNLEDGER_COMPAT_DIR ?? join(REPO, "../shared/compat"))

/** The February-2026 ELSPETH corpus: `PLUGINS.md` and `examples/<name>/settings.yaml`. */
export const COMPAT = join(COMPAT_ROOT, "elspeth")

/** Whether the ELSPETH corpus can be used (its examples folder is there). */
export const HAS_COMPAT = existsSync(join(COMPAT, "examples"))

/** ELSPETH's current corpus: `docs/` and `examples/<name>/settings.yaml` in the explicit-wiring form. */
export const COMPAT_HEAD = join(COMPAT_ROOT, "elspeth-head")

/** Whether ELSPETH's current corpus can be used (its examples folder is there). */
export const HAS_COMPAT_HEAD = existsSync(join(COMPAT_HEAD, "examples"))

const skipNotice = (present: boolean, corpus: string, where: string, what: string): void => {
  if (present) return
  console.warn(
    `skipped: ${what} — the ${corpus} was not found at ${where} ` +
      "(set RUNLEDGER_COMPAT_DIR to the folder holding elspeth/ and elspeth-head/ to run them)"
  )
}

/**
 * Prints, once per test file, why the compat tests of that file are skipped. Call it at
 * the top level of the file, next to `describe.skipIf(!HAS_COMPAT)`; it prints nothing
 * when the corpus is there.
 */
export const compatSkipNotice = (what: string): void => skipNotice(HAS_COMPAT, "ELSPETH compatibility corpus", COMPAT, what)

/** Like `compatSkipNotice`, for the tests of ELSPETH's current corpus (`describe.skipIf(!HAS_COMPAT_HEAD)`). */
export const compatHeadSkipNotice = (what: string): void =>
  skipNotice(HAS_COMPAT_HEAD, "current ELSPETH compatibility corpus", COMPAT_HEAD, what)

/**
 * The corpus files may be read-only where they are kept; the copy must take the
 * examples' outputs (sink files, Landscape databases) in their own folders.
 */
const makeWritable = (path: string): void => {
  const st = statSync(path)
  chmodSync(path, st.mode | (st.isDirectory() ? 0o700 : 0o600))
  if (st.isDirectory()) for (const entry of readdirSync(path)) makeWritable(join(path, entry))
}

const copyOf = (from: string, prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  cpSync(from, dir, { recursive: true })
  makeWritable(dir)
  return dir
}

/** A writable copy of the ELSPETH corpus (its examples run with it as working directory). */
export const compatCopy = (): string => {
  if (!HAS_COMPAT) throw new Error(`the ELSPETH compatibility corpus is not at ${COMPAT}`)
  return copyOf(COMPAT, "rl-compat-")
}

/**
 * A writable copy of ELSPETH's current corpus. Paths inside its examples are relative to
 * the folder holding `examples/`, so that folder (the returned one) is the working
 * directory to run them from.
 */
export const compatHeadCopy = (): string => {
  if (!HAS_COMPAT_HEAD) throw new Error(`the current ELSPETH compatibility corpus is not at ${COMPAT_HEAD}`)
  return copyOf(COMPAT_HEAD, "rl-compat-head-")
}
