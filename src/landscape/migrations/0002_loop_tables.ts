import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

/**
 * Loop tables: loop_runs, loop_issues, stage_results, command_results. A stage row is
 * written `running` when the stage starts and completed when it ends, so a process
 * that dies leaves a trail whose open stages can be recognised afterwards (the
 * owning pid/host of the run tells whether it is still alive).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const statements = [
    `CREATE TABLE loop_runs (
      run_id TEXT PRIMARY KEY,
      status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
      reason TEXT,
      started_at TEXT NOT NULL,
      completed_at TEXT,
      config_file TEXT NOT NULL,
      config_json TEXT NOT NULL,
      repo TEXT NOT NULL,
      run_dir TEXT NOT NULL,
      max_agents INTEGER NOT NULL,
      owner_pid INTEGER NOT NULL,
      owner_host TEXT NOT NULL,
      total_count INTEGER NOT NULL DEFAULT 0,
      success_count INTEGER NOT NULL DEFAULT 0,
      failed_count INTEGER NOT NULL DEFAULT 0,
      interrupted_count INTEGER NOT NULL DEFAULT 0,
      skipped_count INTEGER NOT NULL DEFAULT 0,
      run_end_status TEXT CHECK (run_end_status IS NULL OR run_end_status IN ('pass', 'fail', 'skipped')),
      run_end_reason TEXT
    )`,
    `CREATE TABLE loop_issues (
      run_id TEXT NOT NULL REFERENCES loop_runs(run_id),
      issue_id TEXT NOT NULL,
      title TEXT NOT NULL,
      priority INTEGER,
      status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'interrupted', 'skipped')),
      reason TEXT,
      branch TEXT,
      worktree TEXT,
      base_sha TEXT,
      head_sha TEXT,
      gate_attempts INTEGER NOT NULL DEFAULT 0,
      review_rounds INTEGER NOT NULL DEFAULT 0,
      result_json TEXT,
      started_at TEXT,
      completed_at TEXT,
      PRIMARY KEY (run_id, issue_id)
    )`,
    `CREATE TABLE stage_results (
      stage_id TEXT PRIMARY KEY,
      run_id TEXT NOT NULL REFERENCES loop_runs(run_id),
      issue_id TEXT,
      stage TEXT NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 1,
      status TEXT NOT NULL,
      reason TEXT,
      started_at TEXT NOT NULL,
      completed_at TEXT,
      result_json TEXT
    )`,
    `CREATE INDEX stage_results_run ON stage_results (run_id, issue_id)`,
    `CREATE TABLE command_results (
      command_id TEXT PRIMARY KEY,
      stage_id TEXT REFERENCES stage_results(stage_id),
      run_id TEXT NOT NULL REFERENCES loop_runs(run_id),
      issue_id TEXT,
      stage TEXT NOT NULL,
      ref TEXT NOT NULL,
      command TEXT NOT NULL,
      passed INTEGER NOT NULL,
      exit_code INTEGER,
      timed_out INTEGER NOT NULL,
      duration_ms INTEGER NOT NULL,
      output_tail TEXT NOT NULL,
      log_file TEXT,
      started_at TEXT NOT NULL,
      finished_at TEXT NOT NULL
    )`,
    `CREATE INDEX command_results_run ON command_results (run_id, issue_id)`
  ]
  for (const statement of statements) yield* sql.unsafe(statement)
})
