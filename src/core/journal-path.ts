import * as NodePath from "node:path"

/**
 * The default change journal of a Landscape file (`landscape.dump_to_jsonl` without a
 * path): the file's extension replaced by `.journal.jsonl`, as ELSPETH derives it.
 * Shared by the journal writer and the start-up check that no sink writes it.
 */
export const defaultJournalPath = (landscapeFile: string): string => {
  const ext = NodePath.extname(landscapeFile)
  return `${ext === "" ? landscapeFile : landscapeFile.slice(0, -ext.length)}.journal.jsonl`
}
