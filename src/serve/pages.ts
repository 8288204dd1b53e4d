/**
 * The explorer's pages: server-rendered HTML with plain links (a permalink for every
 * run, row and token), no script. Everything recorded is interpolated through `html`,
 * which escapes it.
 */
import type { Lineage, LineageCandidate, LineageStep, LineageToken } from "../landscape/lineage.js"
import type { LoopCommandRow, LoopIssueRow } from "../landscape/loop-recorder.js"
import type { LoopStageSummary } from "../services/loop-records.js"
import { OUTCOMES } from "../services/records.js"
import { dagSvg } from "./dag.js"
import { href, html, type Html, withQuery } from "./html.js"
import { type BatchRecord, elapsedMs, type RowListItem, type RowPageQuery, type RunDetail, type RunListItem, type RunListQuery } from "../landscape/explorer-queries.js"

export const STYLESHEET = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #fff; }
header { background: #1f2937; color: #fff; padding: 8px 20px; display: flex; gap: 20px; align-items: baseline; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .db { color: #cbd5e1; font-size: 12px; }
main { padding: 14px 20px 40px; max-width: 1400px; }
h1 { font-size: 20px; margin: 6px 0 10px; } h2 { font-size: 16px; margin: 22px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 3px; }
table { border-collapse: collapse; margin: 6px 0; } th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { word-break: break-all; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { background: #f6f8fa; padding: 8px; overflow: auto; max-height: 360px; border: 1px solid #d0d7de; }
.status-completed, .status-success, .status-pass, .outcome-COMPLETED { color: #116329; font-weight: 600; }
.status-failed, .status-fail, .outcome-FAILED { color: #b42318; font-weight: 600; }
.status-interrupted, .status-running, .outcome-QUARANTINED { color: #9a6700; font-weight: 600; }
.outcome-ROUTED { color: #0550ae; font-weight: 600; }
.muted { color: #57606a; } .note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; display: inline-block; }
.pager { margin: 8px 0; display: flex; gap: 14px; } form.filters { margin: 8px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
.dag-wrap { overflow: auto; border: 1px solid #d0d7de; padding: 6px; background: #fcfcfd; }
.dag { max-width: 100%; height: auto; }
.dag a.node:hover rect { stroke: #0969da; stroke-width: 2; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; } dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; }
ul.tree { list-style: none; padding-left: 18px; margin: 4px 0; } ul.tree li { margin: 2px 0; }
.selected { background: #ddf4ff; }
`

export interface PageContext {
  /** What the header says the explorer reads (the Landscape file). */
  readonly database: string
}

const layoutPage = (ctx: PageContext, title: string, body: Html): Html =>
  html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · runledger explorer</title><link rel="stylesheet" href="/assets/explorer.css"></head>
<body><header><a href="/runs">runledger explorer</a><span class="db">${ctx.database} (read-only)</span></header>
<main>${body}</main></body></html>`

const status = (s: string | null) => (s === null ? html`` : html`<span class="status-${s}">${s}</span>`)
const outcome = (o: string | null) => (o === null ? html`<span class="muted">none</span>` : html`<span class="outcome-${o}">${o}</span>`)

/** `0.42 s`, `12.3 s`, `4 min 05 s`. */
export const duration = (ms: number | null): string => {
  if (ms === null || !Number.isFinite(ms)) return ""
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes} min ${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")} s`
}

const pretty = (json: string | null): string => {
  if (json === null) return ""
  try {
    return JSON.stringify(JSON.parse(json), null, 2)
  } catch {
    return json
  }
}

const runLink = (r: { run_id: string; kind: string }) =>
  html`<a href="${r.kind === "loop" ? href("loops", r.run_id) : href("runs", r.run_id)}">${r.run_id}</a>`

// ---------------------------------------------------------------------------
// Runs

export const RUN_STATUSES = ["running", "completed", "failed", "interrupted"] as const

export const runsPage = (
  ctx: PageContext,
  result: { readonly runs: ReadonlyArray<RunListItem>; readonly total: number },
  query: RunListQuery
): Html => {
  const pageNo = Math.floor(query.offset / query.limit) + 1
  const pages = Math.max(1, Math.ceil(result.total / query.limit))
  const link = (p: number) => withQuery("/runs", { status: query.status, kind: query.kind, page: p === 1 ? undefined : p })
  const body = html`<h1>Runs</h1>
<form class="filters" method="get" action="/runs">
  <label>status <select name="status"><option value="">any</option>${
    RUN_STATUSES.map((s) => html`<option value="${s}"${query.status === s ? html` selected` : html``}>${s}</option>`)
  }</select></label>
  <label>kind <select name="kind"><option value="">any</option>${
    (["pipeline", "loop"] as const).map((k) => html`<option value="${k}"${query.kind === k ? html` selected` : html``}>${k}</option>`)
  }</select></label>
  <button type="submit">filter</button>
  <span class="muted">${result.total} run${result.total === 1 ? "" : "s"}</span>
</form>
${
    result.runs.length === 0
      ? html`<p class="muted">No runs${query.status !== undefined || query.kind !== undefined ? " match the filter" : " recorded yet"}.</p>`
      : html`<table id="runs"><thead><tr><th>run</th><th>kind</th><th>status</th><th>started</th><th>duration</th><th>counts</th><th>reason</th></tr></thead><tbody>${
        result.runs.map((r) =>
          html`<tr data-run="${r.run_id}"><td class="mono">${runLink(r)}</td><td>${r.kind}</td><td>${status(r.status)}</td><td class="mono">${r.started_at}</td><td class="num">${duration(r.duration_ms)}</td><td>${
              Object.entries(r.counts).map(([k, v]) => `${k.toLowerCase()}=${v}`).join(" ")
            }</td><td>${r.reason ?? ""}</td></tr>`
        )
      }</tbody></table>`
  }
<div class="pager">${pageNo > 1 ? html`<a rel="prev" href="${link(pageNo - 1)}">← newer</a>` : html``}<span>page ${pageNo} of ${pages}</span>${
    pageNo < pages ? html`<a rel="next" href="${link(pageNo + 1)}">older →</a>` : html``
  }</div>
<p class="muted">JSON: <a href="${withQuery("/api/runs", { status: query.status, kind: query.kind, page: pageNo === 1 ? undefined : pageNo })}">/api/runs</a></p>`
  return layoutPage(ctx, "Runs", body)
}

// ---------------------------------------------------------------------------
// A pipeline run

export interface ExportOffer {
  readonly signed: boolean
  readonly keyEnv: string
}

/** The download link of a run's export: signed when the key is set, else unsigned and saying so. */
const exportLink = (runId: string, offer: ExportOffer): Html =>
  html`<p>${
    offer.signed
      ? html`<a id="download-export" href="${href("runs", runId, "export.json")}">Download the signed export (JSON)</a> — verify it with <code>runledger verify FILE</code>.`
      : html`<span class="note">${offer.keyEnv} is not set: the explorer cannot sign.</span> <a id="download-export" href="${
        withQuery(href("runs", runId, "export.json"), { unsigned: 1 })
      }">Download the unsigned export (JSON)</a>`
  }</p>`

export const runPage = (
  ctx: PageContext,
  detail: RunDetail,
  rows: { readonly rows: ReadonlyArray<RowListItem>; readonly next: number | null },
  rowQuery: RowPageQuery,
  batches: ReadonlyArray<BatchRecord>,
  offer: ExportOffer
): Html => {
  const run = detail.run
  const id = run.run_id
  const nodeName = new Map(detail.nodes.map((n) => [n.node_id, n.name]))
  const rowsLink = (q: Partial<{ outcome: string; sink: string; from: number }>) =>
    withQuery(href("runs", id), { outcome: q.outcome, sink: q.sink, from: q.from === 0 ? undefined : q.from }) + "#rows"
  const body = html`<h1>Run <span class="mono">${id}</span> ${status(run.status)}</h1>
<dl class="kv">
  <dt>started</dt><dd class="mono">${run.started_at}</dd>
  <dt>completed</dt><dd class="mono">${run.completed_at ?? "still running"}</dd>
  <dt>duration</dt><dd>${duration(elapsedMs(run.started_at, run.completed_at))}</dd>
  <dt>rows</dt><dd>${detail.rows}</dd>
  <dt>outcomes</dt><dd>${
    Object.entries(detail.outcomes).map(([o, n]) => html`<a href="${rowsLink({ outcome: o })}">${outcome(o)}</a> ${n} `)
  }</dd>
  <dt>config hash</dt><dd class="mono">${run.config_hash}</dd>
  <dt>hashing</dt><dd class="mono">${run.canonical_version}</dd>
  ${run.error_message === null ? html`` : html`<dt>error</dt><dd><pre>${run.error_message}</pre></dd>`}
</dl>
<h2>Graph</h2>
<p class="muted">Node boxes: type · plugin · tokens that reached the node. Edge labels: route (tokens along it); dashed edges divert errors and quarantined rows.</p>
<div class="dag-wrap">${dagSvg(detail.nodes, detail.edges, detail.counts)}</div>
<h2>Sinks</h2>
${
    detail.sinks.length === 0 ? html`<p class="muted">No terminal outcome recorded.</p>` : html`<table id="sinks"><thead><tr><th>sink</th><th>outcome</th><th>tokens</th></tr></thead><tbody>${
      detail.sinks.map((s) =>
        html`<tr><td>${s.sink_name ?? html`<span class="muted">(no sink)</span>`}</td><td>${outcome(s.outcome)}</td><td class="num"><a href="${
          rowsLink({ outcome: s.outcome, ...(s.sink_name === null ? {} : { sink: s.sink_name }) })
        }">${s.n}</a></td></tr>`
      )
    }</tbody></table>`
  }
${
    detail.artifacts.length === 0 ? html`` : html`<h3>Artifacts</h3><table id="artifacts"><thead><tr><th>sink</th><th>type</th><th>path</th><th>size</th><th>content hash</th></tr></thead><tbody>${
      detail.artifacts.map((a) =>
        html`<tr><td>${String(a.sink_name)}</td><td>${String(a.artifact_type)}</td><td class="mono">${String(a.path_or_uri)}</td><td class="num">${
          String(a.size_bytes)
        }</td><td class="mono">${String(a.content_hash)}</td></tr>`
      )
    }</tbody></table>`
  }
<h2>Export</h2>
<dl class="kv">
  <dt>export status</dt><dd>${run.export_status ?? html`<span class="muted">not asked for by the settings</span>`}</dd>
  ${run.export_format === null ? html`` : html`<dt>format</dt><dd>${run.export_format}</dd>`}
  ${run.export_sink === null ? html`` : html`<dt>sink</dt><dd>${run.export_sink}</dd>`}
  ${run.exported_at === null ? html`` : html`<dt>exported at</dt><dd class="mono">${run.exported_at}</dd>`}
  ${run.export_error === null ? html`` : html`<dt>export error</dt><dd><pre>${run.export_error}</pre></dd>`}
</dl>
${exportLink(id, offer)}
<h2 id="batches">Batches</h2>
${
    detail.batch_count === 0 ? html`<p class="muted">No aggregation batches.</p>` : html`${batchTable(batches)}${
      detail.batch_count > batches.length ? html`<p><a href="${href("runs", id, "batches")}">all ${detail.batch_count} batches →</a></p>` : html``
    }`
  }
<h2 id="rows">Rows</h2>
<form class="filters" method="get" action="${href("runs", id)}">
  <label>outcome <select name="outcome"><option value="">any</option>${
    OUTCOMES.filter((o) => o !== "BUFFERED").map((o) => html`<option value="${o}"${rowQuery.outcome === o ? html` selected` : html``}>${o}</option>`)
  }</select></label>
  ${rowQuery.sink === undefined ? html`` : html`<input type="hidden" name="sink" value="${rowQuery.sink}"><span>sink ${rowQuery.sink}</span>`}
  <label>from row <input type="number" name="from" min="0" value="${rowQuery.from}" size="8"></label>
  <button type="submit">show</button>
</form>
${
    rows.rows.length === 0 ? html`<p class="muted">No rows on this page.</p>` : html`<table id="row-list"><thead><tr><th>row</th><th>outcomes</th><th>source data</th></tr></thead><tbody>${
      rows.rows.map((r) =>
        html`<tr data-row="${r.row_index}"><td class="num"><a href="${href("runs", id, "rows", r.row_index)}">${r.row_index}</a></td><td>${
          r.outcomes.map((o) =>
            html`<a href="${href("runs", id, "tokens", o.token_id)}">${outcome(o.outcome)}</a>${o.sink_name === null ? "" : ` → ${o.sink_name}`} `
          )
        }</td><td class="mono">${clip(r.source_data_json, 160)}</td></tr>`
      )
    }</tbody></table>`
  }
<div class="pager">${
    rowQuery.from > 0 ? html`<a href="${rowsLink({ ...filterOf(rowQuery), from: 0 })}">first page</a>` : html``
  }${
    rowQuery.from > 0 && rowQuery.outcome === undefined && rowQuery.sink === undefined
      ? html`<a rel="prev" href="${rowsLink({ from: Math.max(0, rowQuery.from - rowQuery.limit) })}">← previous</a>`
      : html``
  }${rows.next === null ? html`` : html`<a rel="next" href="${rowsLink({ ...filterOf(rowQuery), from: rows.next })}">next →</a>`}</div>
<h2 id="nodes">Nodes and the settings that ran</h2>
<table id="nodes-table"><thead><tr><th>#</th><th>node</th><th>type</th><th>plugin</th><th>tokens</th><th>config</th></tr></thead><tbody>${
    detail.nodes.map((n) =>
      html`<tr id="node-${encodeURIComponent(n.node_id)}"><td class="num">${n.sequence}</td><td>${n.name}<br><span class="mono muted">${n.node_id}</span></td><td>${n.node_type}</td><td>${n.plugin_name}</td><td class="num">${
        detail.counts.nodes[n.node_id] ?? 0
      }</td><td><details><summary>config</summary><pre>${pretty(n.config_json)}</pre></details></td></tr>`
    )
  }</tbody></table>
<h3>Edges</h3>
<table id="edges"><thead><tr><th>from</th><th>label</th><th>to</th><th>mode</th><th>tokens</th></tr></thead><tbody>${
    detail.edges.map((e) => {
      const n = detail.counts.edges[e.edge_id]
      return html`<tr><td>${nodeName.get(e.from_node_id) ?? e.from_node_id}</td><td>${e.label}</td><td>${nodeName.get(e.to_node_id) ?? e.to_node_id}</td><td>${e.mode}</td><td class="num">${
        n === undefined || n === null ? "?" : n
      }</td></tr>`
    })
  }</tbody></table>
<h3>Settings</h3>
<pre id="settings">${pretty(run.settings_json)}</pre>
<p class="muted">JSON: <a href="${href("api", "runs", id)}">/api/runs/${id}</a> · <a href="${withQuery(href("api", "runs", id, "rows"), { outcome: rowQuery.outcome, sink: rowQuery.sink, from: rowQuery.from || undefined })}">rows</a></p>`
  return layoutPage(ctx, `Run ${id}`, body)
}

const filterOf = (q: RowPageQuery) => ({ ...(q.outcome === undefined ? {} : { outcome: q.outcome }), ...(q.sink === undefined ? {} : { sink: q.sink }) })

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text)

const batchTable = (batches: ReadonlyArray<BatchRecord>) =>
  html`<table class="batches"><thead><tr><th>batch</th><th>aggregation</th><th>trigger</th><th>status</th><th>attempt</th><th>members</th><th>created</th><th>completed</th></tr></thead><tbody>${
    batches.map((b) =>
      html`<tr><td class="mono">${b.batch_id}</td><td>${b.aggregation}</td><td>${b.trigger_type ?? ""}${
        b.trigger_reason === null ? "" : ` (${b.trigger_reason})`
      }</td><td>${status(b.status)}</td><td class="num">${b.attempt}</td><td class="num">${b.members}</td><td class="mono">${b.created_at}</td><td class="mono">${
        b.completed_at ?? ""
      }</td></tr>`
    )
  }</tbody></table>`

export const batchesPage = (ctx: PageContext, runId: string, batches: ReadonlyArray<BatchRecord>, pageNo: number, total: number, limit: number): Html => {
  const pages = Math.max(1, Math.ceil(total / limit))
  const link = (p: number) => withQuery(href("runs", runId, "batches"), { page: p === 1 ? undefined : p })
  return layoutPage(
    ctx,
    `Batches of ${runId}`,
    html`<h1>Batches of run <a class="mono" href="${href("runs", runId)}">${runId}</a></h1>${batchTable(batches)}
<div class="pager">${pageNo > 1 ? html`<a rel="prev" href="${link(pageNo - 1)}">← previous</a>` : html``}<span>page ${pageNo} of ${pages}</span>${
      pageNo < pages ? html`<a rel="next" href="${link(pageNo + 1)}">next →</a>` : html``
    }</div>`
  )
}

// ---------------------------------------------------------------------------
// A row's lineage

export interface Membership {
  readonly token_id: string
  readonly batch_id: string
  readonly ordinal: number
  readonly aggregation: string
  readonly trigger_type: string | null
  readonly trigger_reason: string | null
  readonly status: string
}

const json = (value: unknown) => (value === null || value === undefined ? "" : JSON.stringify(value, null, 2))

const tokenTree = (runId: string, tokens: ReadonlyArray<LineageToken>, selected: string): Html =>
  html`<ul class="tree">${
    tokens.map((t) =>
      html`<li${t.token_id === selected ? html` class="selected"` : html``}><a class="mono" href="${href("runs", runId, "tokens", t.token_id)}">${t.token_id}</a> ${
        t.outcome === null ? html`<span class="muted">no outcome</span>` : outcome(t.outcome.outcome)
      }${t.outcome?.sink_name == null ? "" : ` → ${t.outcome.sink_name}`}${t.branch_name === null ? "" : ` · branch ${t.branch_name}`}${
        t.fork_group_id === null ? "" : ` · fork ${t.fork_group_id}`
      }${t.join_group_id === null ? "" : ` · coalesced ${t.join_group_id}`}${t.expand_group_id === null ? "" : ` · expanded ${t.expand_group_id}`}${
        t.children.length === 0 ? html`` : tokenTree(runId, t.children, selected)
      }</li>`
    )
  }</ul>`

const routingText = (reason: unknown): Html => {
  if (reason !== null && typeof reason === "object") {
    const r = reason as Record<string, unknown>
    if ("condition" in r) {
      return html`condition <code>${String(r.condition)}</code> was <code>${JSON.stringify(r.result)}</code>`
    }
  }
  return html`<code>${json(reason)}</code>`
}

const stepRow = (s: LineageStep): Html =>
  html`<tr class="step" data-node="${s.node.name}"><td class="num">${s.step_index}</td><td>${s.node.name}<br><span class="muted">${s.node.node_type} · ${s.node.plugin}</span></td><td class="num">${s.attempt}</td><td>${
    status(s.status)
  }</td><td class="mono">${s.input_hash}</td><td class="mono">${s.output_hash ?? ""}</td><td class="num">${s.duration_ms === null ? "" : `${s.duration_ms.toFixed(2)} ms`}</td><td>${
    s.routing.map((r) => html`<div>→ <b>${r.destination}</b> (${r.edge_label}, ${r.mode}): ${routingText(r.reason)}</div>`)
  }${s.error === null || s.error === undefined ? html`` : html`<pre>${json(s.error)}</pre>`}</td></tr>`

export const lineagePage = (ctx: PageContext, lineage: Lineage, memberships: ReadonlyArray<Membership>): Html => {
  const runId = lineage.run.run_id
  const row = lineage.row
  const o = lineage.outcome
  const body = html`<p><a href="${href("runs", runId)}">← run <span class="mono">${runId}</span></a></p>
<h1>Row ${row.row_index} <span class="muted mono">${row.row_id}</span></h1>
<p id="verdict">Token <a class="mono" href="${href("runs", runId, "tokens", lineage.token_id)}">${lineage.token_id}</a> ended ${
    o === null ? html`with no outcome` : html`${outcome(o.outcome)}`
  }${o?.sink_name == null ? "" : html` in sink <b>${o.sink_name}</b>`}${o === null ? "" : html` at <span class="mono">${o.recorded_at}</span>`}.</p>
${
    o?.context === null || o?.context === undefined ? html`` : html`<h2>Why</h2><pre id="outcome-context">${json(o.context)}</pre>`
  }
${
    lineage.validation_errors.length === 0 ? html`` : html`<h2>Validation errors</h2><table id="validation-errors"><thead><tr><th>node</th><th>error</th><th>schema</th><th>sent to</th><th>row hash</th></tr></thead><tbody>${
      lineage.validation_errors.map((v) =>
        html`<tr><td>${v.node}</td><td>${v.error}</td><td>${v.schema_mode}</td><td>${v.destination}</td><td class="mono">${v.row_hash}</td></tr>`
      )
    }</tbody></table>`
  }
${
    lineage.transform_errors.length === 0 ? html`` : html`<h2>Transform errors</h2><table id="transform-errors"><thead><tr><th>node</th><th>token</th><th>sent to</th><th>details</th></tr></thead><tbody>${
      lineage.transform_errors.map((t) =>
        html`<tr><td>${t.node}</td><td class="mono">${t.token_id}</td><td>${t.destination}</td><td><pre>${json(t.details)}</pre></td></tr>`
      )
    }</tbody></table>`
  }
<h2>Source row</h2>
<dl class="kv"><dt>source</dt><dd>${row.source.name} (${row.source.plugin})</dd><dt>read at</dt><dd class="mono">${row.created_at}</dd><dt>hash</dt><dd class="mono">${row.hash}</dd></dl>
<pre id="row-data">${json(row.data)}</pre>
<h2>Node states</h2>
${
    lineage.steps.length === 0 ? html`<p class="muted">No node state: the row did not reach a transform.</p>` : html`<table id="steps"><thead><tr><th>step</th><th>node</th><th>attempt</th><th>status</th><th>input hash</th><th>output hash</th><th>duration</th><th>routing / error</th></tr></thead><tbody>${
      lineage.steps.map(stepRow)
    }</tbody></table>`
  }
<h2>Tokens</h2>
${tokenTree(runId, lineage.tokens, lineage.token_id)}
${
    memberships.length === 0 ? html`` : html`<h2>Batches</h2><table id="memberships"><thead><tr><th>token</th><th>batch</th><th>aggregation</th><th>position</th><th>trigger</th><th>status</th></tr></thead><tbody>${
      memberships.map((m) =>
        html`<tr><td class="mono">${m.token_id}</td><td class="mono">${m.batch_id}</td><td>${m.aggregation}</td><td class="num">${m.ordinal}</td><td>${m.trigger_type ?? ""}${
          m.trigger_reason === null ? "" : ` (${m.trigger_reason})`
        }</td><td>${status(m.status)}</td></tr>`
      )
    }</tbody></table>`
  }
<h2>Sink write</h2>
${
    lineage.sink === null ? html`<p class="muted">The token reached no sink.</p>` : html`<p>Sink <b>${lineage.sink.name}</b>${
      lineage.sink.plugin === null ? "" : ` (${lineage.sink.plugin})`
    }</p>${
      lineage.sink.artifacts.length === 0 ? html`<p class="muted">No artifact recorded for this sink.</p>` : html`<table id="sink-artifacts"><thead><tr><th>path</th><th>content hash</th><th>size</th></tr></thead><tbody>${
        lineage.sink.artifacts.map((a) => html`<tr><td class="mono">${a.path_or_uri}</td><td class="mono">${a.content_hash}</td><td class="num">${a.size_bytes}</td></tr>`)
      }</tbody></table>`
    }`
  }
<p class="muted">JSON: <a href="${href("api", "runs", runId, "tokens", lineage.token_id)}">/api/runs/${runId}/tokens/${lineage.token_id}</a> · the same as <code>runledger explain --run ${runId} --token ${lineage.token_id}</code></p>`
  return layoutPage(ctx, `Row ${row.row_index} of ${runId}`, body)
}

/** A row whose tokens reached several outcomes: one link per token. */
export const ambiguousPage = (ctx: PageContext, runId: string, rowIndex: number, message: string, candidates: ReadonlyArray<LineageCandidate>): Html =>
  layoutPage(
    ctx,
    `Row ${rowIndex} of ${runId}`,
    html`<p><a href="${href("runs", runId)}">← run <span class="mono">${runId}</span></a></p><h1>Row ${rowIndex}</h1><p>${message}</p>
<table id="candidates"><thead><tr><th>token</th><th>outcome</th><th>sink</th><th>branch</th></tr></thead><tbody>${
      candidates.map((c) =>
        html`<tr><td><a class="mono" href="${href("runs", runId, "tokens", c.token_id)}">${c.token_id}</a></td><td>${outcome(c.outcome)}</td><td>${c.sink_name ?? ""}</td><td>${
          c.branch_name ?? ""
        }</td></tr>`
      )
    }</tbody></table>`
  )

// ---------------------------------------------------------------------------
// A loop run

export const loopPage = (
  ctx: PageContext,
  detail: {
    readonly run: { readonly run_id: string; readonly status: string; readonly reason: string | null; readonly started_at: string; readonly completed_at: string | null; readonly repo: string; readonly run_end_status: string | null; readonly run_end_reason: string | null; readonly counts: Readonly<Record<string, number>> }
    readonly extra: Readonly<Record<string, unknown>>
    readonly issues: ReadonlyArray<LoopIssueRow>
    readonly stages: ReadonlyArray<LoopStageSummary>
    readonly commands: ReadonlyMap<string | null, ReadonlyArray<LoopCommandRow>>
  },
  offer: ExportOffer
): Html => {
  const run = detail.run
  const stageNames = [...new Set(detail.stages.map((s) => s.stage))]
  const ids = [...new Set([...detail.issues.map((i) => i.issue_id), ...detail.stages.flatMap((s) => (s.issue_id === null ? [] : [s.issue_id]))])]
  const issueOf = new Map(detail.issues.map((i) => [i.issue_id, i]))
  const cell = (id: string | null, stage: string) => {
    const own = detail.stages.filter((s) => s.issue_id === id && s.stage === stage)
    if (own.length === 0) return html`<td></td>`
    const last = own[own.length - 1]!
    const total = own.reduce((sum, s) => sum + (elapsedMs(s.started_at, s.completed_at) ?? 0), 0)
    return html`<td>${status(last.status)}${last.reason === null ? "" : ` (${last.reason})`}<br><span class="muted">${own.length} attempt${
      own.length === 1 ? "" : "s"
    } · ${duration(total)}</span></td>`
  }
  const commandsOf = (id: string | null) => detail.commands.get(id) ?? []
  const commandBlock = (c: LoopCommandRow) =>
    html`<details><summary>${c.stage}${c.attempt === null ? "" : ` #${c.attempt}`} <b>${c.ref}</b>: ${
      c.timed_out ? "timed out" : c.exit_code === null ? "killed by a signal" : `exit ${c.exit_code}`
    }${c.passed ? "" : " (failed)"}, ${duration(c.duration_ms)}</summary><pre>$ ${c.command}\n${c.output_tail}</pre></details>`
  const integration = ["integration_strategy", "integration_branch", "integration_head", "base_sha"].filter((k) => detail.extra[k] !== null && detail.extra[k] !== undefined)
  const body = html`<h1>Loop run <span class="mono">${run.run_id}</span> ${status(run.status)}${run.reason === null ? "" : ` (${run.reason})`}</h1>
<dl class="kv">
  <dt>started</dt><dd class="mono">${run.started_at}</dd>
  <dt>completed</dt><dd class="mono">${run.completed_at ?? "still running"}</dd>
  <dt>duration</dt><dd>${duration(elapsedMs(run.started_at, run.completed_at))}</dd>
  <dt>repository</dt><dd class="mono">${run.repo}</dd>
  <dt>issues</dt><dd>${Object.entries(run.counts).map(([k, v]) => `${k}=${v}`).join(" ")}</dd>
  <dt>run_end</dt><dd>${run.run_end_status === null ? "not run" : html`${status(run.run_end_status)}${run.run_end_reason === null ? "" : ` (${run.run_end_reason})`}`}</dd>
</dl>
<h2>Export</h2>
${exportLink(run.run_id, offer)}
<h2>Integration</h2>
${
    integration.length === 0 ? html`<p class="muted">No integration recorded.</p>` : html`<dl class="kv" id="integration">${
      integration.map((k) => html`<dt>${k.replace(/_/g, " ")}</dt><dd class="mono">${String(detail.extra[k])}</dd>`)
    }</dl>`
  }
<h2>Issues × stages</h2>
<table id="issue-stages"><thead><tr><th>issue</th><th>status</th><th>duration</th>${stageNames.map((s) => html`<th>${s}</th>`)}</tr></thead><tbody>${
    ids.map((id) => {
      const issue = issueOf.get(id)
      return html`<tr data-issue="${id}"><td><a href="#issue-${encodeURIComponent(id)}">${id}</a>${issue === undefined ? html` <span class="muted">(not an issue of the run)</span>` : html`<br><span class="muted">${issue.title}</span>`}</td><td>${
        issue === undefined ? "" : html`${status(issue.status)}${issue.reason === null ? "" : ` (${issue.reason})`}`
      }</td><td class="num">${issue === undefined ? "" : duration(elapsedMs(issue.started_at, issue.completed_at))}</td>${stageNames.map((s) => cell(id, s))}</tr>`
    })
  }<tr data-issue="run_end"><td>(run)</td><td></td><td></td>${stageNames.map((s) => cell(null, s))}</tr></tbody></table>
<h2>Commands</h2>
${
    ids.map((id) => {
      const issue = issueOf.get(id)
      return html`<h3 id="issue-${encodeURIComponent(id)}">${id}</h3>${
        issue?.branch == null ? html`` : html`<p class="mono">branch ${issue.branch} ${issue.base_sha ?? ""}..${issue.head_sha ?? ""}</p>`
      }${commandsOf(id).length === 0 ? html`<p class="muted">No command recorded.</p>` : commandsOf(id).map(commandBlock)}`
    })
  }
<h3>run_end</h3>${commandsOf(null).length === 0 ? html`<p class="muted">No command recorded.</p>` : commandsOf(null).map(commandBlock)}
<p class="muted">JSON: <a href="${href("api", "loops", run.run_id)}">/api/loops/${run.run_id}</a></p>`
  return layoutPage(ctx, `Loop run ${run.run_id}`, body)
}

export const errorPage = (ctx: PageContext, code: number, title: string, message: string): Html =>
  layoutPage(ctx, title, html`<h1>${code} ${title}</h1><p id="error">${message}</p><p><a href="/runs">all runs</a></p>`)
