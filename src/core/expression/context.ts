/**
 * The state of one evaluation. Each call to `evaluate` makes its own, so evaluations
 * that nest (a row whose conversion runs another) or follow a failed one never share
 * a step budget.
 */
import { fail } from "./errors.js"
import { EXPRESSION_LIMITS } from "./limits.js"

export class EvalContext {
  private stepsLeft: number = EXPRESSION_LIMITS.maxSteps
  private nans = 0

  /** Spends `n` elementary steps (element comparisons, items copied, ...). */
  tick(n: number): void {
    this.stepsLeft -= n
    if (this.stepsLeft < 0) {
      fail(`the expression is too expensive to evaluate (more than ${EXPRESSION_LIMITS.maxSteps} steps)`)
    }
  }

  /** A hash key no other value of this evaluation has: each NaN is unequal to every value. */
  nanKey(): string {
    return `nan:${this.nans++}`
  }
}
