/**
 * The CLI's composition root: the layers each kind of command runs with, built in this
 * one place. Commands pick the function for their kind and provide its layer once,
 * around their program; nothing else in cli/ names a layer implementation.
 *
 * | kind | commands | provides |
 * |---|---|---|
 * | `landscapeRead(url)` | explain, export, runs | the Landscape (Recorder + SqlClient) |
 * | `pipelineRun(settings, url, telemetry)` | run, resume (the run, its export, its summary) | the Landscape as the settings ask for it + the run's Telemetry |
 * | `loopRun(config, url)` | loop | the loop's audit port (LoopRecorder) + the process watchdog + the Fixer + console Telemetry |
 *
 * validate, verify and plugins need no service.
 *
 * The Landscape passphrase is read from the environment here and nowhere else: for run
 * and resume from the variable the settings name (`landscape.encryption_key_env`), for
 * the other commands (which have no settings) from RUNLEDGER_AUDIT_KEY, then
 * ELSPETH_AUDIT_KEY — used only when the file is encrypted.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Context, Effect, Layer } from "effect"
import { requireLandscape } from "./common.js"
import { LoopRecorderSql } from "../landscape/loop-recorder.js"
import { filesystemPayloadStore } from "../landscape/payload-store.js"
import type { SqlRecorderOptions } from "../landscape/sql-recorder.js"
import {
  DEFAULT_KEY_ENVS,
  describeKeyEnvs,
  type LandscapeEncryption,
  type LandscapeOpenOptions,
  LandscapeSql,
  passphraseFrom,
  SqliteLandscape
} from "../landscape/sqlite.js"
import type { LoopConfig } from "../loop/config.js"
import { CommandFixer } from "../loop/fixer.js"
import { ProcessWatchdogLive } from "../loop/watchdog.js"
import { type LandscapeSections, landscapeRequest } from "../pipeline/landscape-settings.js"
import type { PipelineSettings } from "../pipeline/settings.js"
import { type OtlpRequest, resolveTelemetry, type TelemetryRequest } from "../services/telemetry-settings.js"
import { runSummaries } from "../landscape/queries.js"
import {
  Telemetry,
  TelemetryConsole,
  TelemetryEnriched,
  type TelemetryEvent,
  TelemetryJsonl,
  TelemetryNoop,
  TelemetryStream,
  TelemetryTee
} from "../services/telemetry.js"

type Env = Readonly<Record<string, string | undefined>>

/** Without settings: whatever the file is; an encrypted one is opened with the default variables' passphrase. */
export const detectedEncryption = (env: Env = process.env): LandscapeEncryption => ({
  _tag: "Detect",
  passphrase: passphraseFrom(env, DEFAULT_KEY_ENVS),
  keyEnv: describeKeyEnvs(DEFAULT_KEY_ENVS)
})

const warnOnStderr = (message: string) => {
  process.stderr.write(`warning: ${message}\n`)
}

/** A Landscape of an older schema being upgraded: said on stderr before the wait. */
const noteOnStderr = (message: string) => {
  process.stderr.write(`runledger: ${message}\n`)
}

/**
 * How run and resume open the Landscape: encrypted or not as `landscape.backend` says
 * (the passphrase from `encryption_key_env`, else the default variables), with the
 * change journal and the payload store when the settings ask for them.
 */
export const pipelineLandscapeOptions = (settings: LandscapeSections, env: Env = process.env) => {
  const request = landscapeRequest(settings)
  const names = request.keyEnv === undefined ? DEFAULT_KEY_ENVS : [request.keyEnv]
  const encryption: LandscapeEncryption = request.encrypted
    ? {
      _tag: "Encrypted",
      passphrase: passphraseFrom(env, names),
      keyEnv: request.keyEnv === undefined ? describeKeyEnvs(names) : `${request.keyEnv} (landscape.encryption_key_env)`
    }
    : { _tag: "Plaintext", keyEnv: describeKeyEnvs(DEFAULT_KEY_ENVS) }
  const journal = request.journal
  const options: LandscapeOpenOptions & SqlRecorderOptions = {
    encryption,
    onUpgrade: noteOnStderr,
    ...(journal === undefined ? {} : {
      journal: {
        path: journal.path,
        failOnError: journal.failOnError,
        payloads: journal.payloadBasePath === undefined ? undefined : filesystemPayloadStore(journal.payloadBasePath),
        warn: warnOnStderr
      }
    }),
    ...(request.payloadStore === undefined ? {} : { payloadStore: filesystemPayloadStore(request.payloadStore.basePath) })
  }
  return options
}

/**
 * Commands that read a Landscape: explain, export, runs, loop status/logs. A file that
 * does not exist is a mistyped --db (exit 2 naming the file), never one to create.
 */
export const landscapeRead = (url: string) =>
  Layer.unwrapEffect(
    requireLandscape(url, ` (--db ${url})`).pipe(Effect.as(SqliteLandscape(url, { encryption: detectedEncryption(), onUpgrade: noteOnStderr })))
  )

/** The OpenTelemetry SDK is loaded only by a run that exports to OTLP (start-up stays light). */
const otlpTelemetry = (otlp: OtlpRequest, granularity: TelemetryRequest["granularity"]): Layer.Layer<Telemetry> =>
  Layer.unwrapEffect(
    Effect.promise(() => import("../services/otel.js")).pipe(Effect.map((m) => m.OtelTelemetry(otlp, { granularity })))
  )

/**
 * The exporters a `telemetry:` section asks for (JSONL files, console streams, OTLP),
 * teed, at its granularity; `undefined` when it asks for none.
 */
export const requestedTelemetry = (request: TelemetryRequest | undefined) => {
  if (request === undefined) return undefined
  const layers: Array<Layer.Layer<Telemetry>> = [
    ...request.jsonl.map((path) => TelemetryJsonl(path).pipe(Layer.provide(NodeFileSystem.layer))),
    ...request.console.map((c) => TelemetryStream(c.output === "stdout" ? process.stdout : process.stderr, c.format)),
    ...(request.otlp === undefined ? [] : [otlpTelemetry(request.otlp, request.granularity)])
  ]
  if (layers.length === 0) return undefined
  const teed = Layer.map(TelemetryTee(...layers), (ctx) =>
    Context.add(ctx, Telemetry, { ...Context.get(ctx, Telemetry), granularity: request.granularity }))
  return teed
}

/** The per-sink and per-node summaries of a pipeline run, read from its Landscape, ahead of RunFinished. */
const withRunSummaries = (layer: Layer.Layer<Telemetry>) =>
  TelemetryEnriched(layer, (event) =>
    event._tag !== "RunFinished"
      ? Effect.succeed([])
      : runSummaries(event.runId).pipe(
        Effect.map((s): ReadonlyArray<TelemetryEvent> => [
          ...s.sinks.map((x) => ({ _tag: "SinkSummary" as const, runId: event.runId, ...x })),
          ...s.nodes.map((x) => ({ _tag: "NodeSummary" as const, runId: event.runId, ...x }))
        ]),
        Effect.catchAll((e) => Effect.succeed([{ _tag: "Warning" as const, message: `telemetry: ${e.message}` }]))
      ))

/**
 * A pipeline run's Telemetry: the console (progress line, events) unless `--quiet` or
 * `--json`, teed to the exporters of the settings' `telemetry` section (a JSONL file,
 * console streams, OTLP) when it is enabled.
 */
export const pipelineTelemetry = (
  settings: Pick<PipelineSettings, "telemetry">,
  output: { readonly quiet: boolean; readonly json: boolean }
) => {
  const resolved = resolveTelemetry(settings.telemetry)
  const exporters = "request" in resolved ? requestedTelemetry(resolved.request) : undefined
  const human = !output.quiet && !output.json ? TelemetryConsole : TelemetryNoop
  return exporters === undefined ? human : TelemetryTee(human, withRunSummaries(exporters))
}

/** `run`, `resume`: the Landscape the run is recorded in, as its settings ask, and its Telemetry. */
export const pipelineRun = (
  settings: LandscapeSections,
  url: string,
  telemetry: ReturnType<typeof pipelineTelemetry>
) => telemetry.pipe(Layer.provideMerge(SqliteLandscape(url, pipelineLandscapeOptions(settings))))

/** The loop's Telemetry: the console, teed to the exporters of the config's `telemetry` section. */
const loopTelemetry = (config: LoopConfig) => {
  const exporters = requestedTelemetry(config.telemetry)
  return exporters === undefined ? TelemetryConsole : TelemetryTee(TelemetryConsole, exporters)
}

/**
 * `loop`: the loop's audit port over the Landscape, the watchdog that kills its
 * commands if runledger dies (recording their process groups through that port), the
 * config's Fixer, console Telemetry.
 */
export const loopRun = (config: LoopConfig, url: string) =>
  Layer.mergeAll(
    CommandFixer(config),
    loopTelemetry(config),
    ProcessWatchdogLive({ graceMs: config.killGraceMs }).pipe(
      Layer.provideMerge(LoopRecorderSql.pipe(Layer.provide(LandscapeSql(url, { encryption: detectedEncryption(), onUpgrade: noteOnStderr }))))
    )
  )
