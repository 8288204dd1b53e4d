/**
 * The vocabulary the row processor shares with its stateful steps (aggregations and
 * coalesces): the token in flight, the failure that stops a run, and the callbacks a
 * step uses to arm its timeout. A leaf of the orchestrator: it imports no other
 * orchestrator module, so the processor and its steps depend on it and not on each
 * other's internals.
 */
import type { AggregationStep, CoalesceStep } from "../build.js"
import type { NodeStateRecord } from "../../services/records.js"
import type { Row, TransformResult } from "../plugins/protocol.js"

/** A token in flight. `next` is the index in the chain of the step it runs next (the chain's length: a sink). */
export interface Token {
  readonly tokenId: string
  readonly rowId: string
  readonly rowIndex: number
  readonly row: Row
  readonly next: number
  readonly branch: string | null
  readonly attempt: number
  /**
   * SHA-256 of the canonical JSON of `row`, when the step that made `row` knew it (the
   * source, a transform). Whoever gives a token a new row gives it that row's hash or
   * none; a token without one has its row hashed when a step needs it.
   */
  readonly hash?: string | undefined
  /** Gate step → id of the ancestor token forked there (absent when never forked). */
  readonly forks?: Readonly<Record<number, string>>
  /** Past the chain (`next` = chain length): the sink it goes to, when a node named one. */
  readonly sink?: string
  /** At an external transform (`next`): the result its call gave, and the state opened when it parked. */
  readonly resolved?: ResolvedCall
}

/** What an external transform's call gave a parked token (see `Processor.resume`). */
export interface ResolvedCall {
  readonly result: TransformResult
  readonly state: NodeStateRecord
  readonly started: bigint
  readonly inputHash: string
}

/** A run-stopping failure ("crash"): names the node, the row and the cause. */
export class ProcessingCrash extends Error {
  constructor(
    message: string,
    readonly nodeName: string,
    readonly rowIndex: number,
    override readonly cause?: unknown
  ) {
    super(message)
  }
}

/** Called when a batch with a timeout starts: the timer fiber should wake at `deadlineMs`. */
export type ScheduleTimeout = (step: AggregationStep, generation: number, deadlineMs: number) => void

/** Called when a coalesce group with a timeout starts pending: the timer fiber should wake at `deadlineMs`. */
export type ScheduleCoalesceTimeout = (step: CoalesceStep, key: string, generation: number, deadlineMs: number) => void
