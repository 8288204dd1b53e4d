/**
 * The pipeline fixtures of tests/fixtures/pipelines, copied to a temporary directory so
 * runs can write their outputs and Landscapes there. Settings paths are relative to
 * that folder: run the CLI (or change directory) into the copy.
 */
import { cpSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const PIPELINE_FIXTURES = resolve(__dirname, "../fixtures/pipelines")

/** A writable copy of tests/fixtures/pipelines; remove it when done. */
export const pipelineFixtures = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "rl-fixtures-"))
  cpSync(PIPELINE_FIXTURES, dir, { recursive: true })
  return dir
}
