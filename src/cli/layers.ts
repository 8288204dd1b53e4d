/**
 * The CLI's composition root: the layers each kind of command runs with, built in this
 * one place. Commands pick the function for their kind and provide its layer once,
 * around their program; nothing else in cli/ names a layer implementation.
 *
 * | kind | commands | provides |
 * |---|---|---|
 * | `landscapeRead(url)` | explain, export, runs | the Landscape (Recorder + SqlClient) |
 * | `pipelineRun(url, telemetry)` | run (the run, its export, its summary) | the Landscape + the run's Telemetry |
 * | `loopRun(config, url)` | loop | the loop's audit port (LoopRecorder) + the Fixer + console Telemetry |
 *
 * validate, verify and plugins need no service.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Layer } from "effect"
import { LoopRecorderSql } from "../landscape/loop-recorder.js"
import { LandscapeSql, SqliteLandscape } from "../landscape/sqlite.js"
import type { LoopConfig } from "../loop/config.js"
import { CommandFixer } from "../loop/fixer.js"
import type { PipelineSettings } from "../pipeline/settings.js"
import { TelemetryConsole, TelemetryJsonl, TelemetryNoop, TelemetryTee } from "../services/telemetry.js"

/** Commands that read a Landscape: explain, export, runs. */
export const landscapeRead = (url: string) => SqliteLandscape(url)

/**
 * A pipeline run's Telemetry: the console (progress line, events) unless `--quiet` or
 * `--json`, teed to the settings' `telemetry.jsonl_path` when one is set and enabled.
 */
export const pipelineTelemetry = (
  settings: Pick<PipelineSettings, "telemetry">,
  output: { readonly quiet: boolean; readonly json: boolean }
) => {
  const jsonlPath = settings.telemetry?.enabled === false ? undefined : settings.telemetry?.jsonl_path
  const human = !output.quiet && !output.json ? TelemetryConsole : TelemetryNoop
  return jsonlPath === undefined
    ? human
    : TelemetryTee(human, TelemetryJsonl(jsonlPath).pipe(Layer.provide(NodeFileSystem.layer)))
}

/** `run`: the Landscape the run is recorded in, and its Telemetry. */
export const pipelineRun = (url: string, telemetry: ReturnType<typeof pipelineTelemetry>) =>
  Layer.merge(SqliteLandscape(url), telemetry)

/** `loop`: the loop's audit port over the Landscape, the config's Fixer, console Telemetry. */
export const loopRun = (config: LoopConfig, url: string) =>
  Layer.mergeAll(CommandFixer(config), TelemetryConsole, LoopRecorderSql.pipe(Layer.provide(LandscapeSql(url))))
