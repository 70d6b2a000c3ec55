/**
 * Where a file from another person may be saved, without JupyterLab or a browser (unit-
 * tested under node, test/received.test.mjs): the checks of a path typed in "Save as…",
 * the folders it needs, the free name that keeps both files, the copy-request fields of an
 * offer, and the bounds on the requests one person may make of us.
 *
 * The name comes from another person: it is only a suggestion (model.ts `suggestedPath`
 * keeps its last segment, without hidden characters); what is saved is the path the
 * receiver typed, checked here again because the receiver may paste anything too.
 */

import type { Json } from "./model.js";
import { withoutHidden } from "./names.js";

export type PathCheck = { ok: true; path: string; folders: string[] } | { ok: false; reason: string };

const LONGEST_SEGMENT = 255;

/**
 * A path to save at, on this server, relative to its root: `received/x.csv`. Refused: an
 * absolute path, a `..` or `.` segment, a backslash, hidden characters (controls, bidi
 * overrides: what reads otherwise than it is), an empty name or one over 255 characters.
 * `folders` are the folders it needs, outermost first (`["received"]`).
 */
export function checkSavePath(typed: string): PathCheck {
  const path = typed.trim();
  if (!path) return { ok: false, reason: "no name given" };
  if (path.startsWith("/") || /^[a-z]:/iu.test(path)) return { ok: false, reason: `${JSON.stringify(withoutHidden(path))} is absolute: give a path inside this server's folder` };
  if (path.includes("\\")) return { ok: false, reason: "a backslash is not allowed in a path here" };
  if (withoutHidden(path) !== path) return { ok: false, reason: "the path has hidden characters (controls, bidi overrides): type it again" };
  const segments = path.split("/");
  if (segments[segments.length - 1] === "") return { ok: false, reason: "the path names a folder, not a file" };
  for (const segment of segments) {
    if (segment === "" ) return { ok: false, reason: "the path has an empty folder name (//)" };
    if (segment === "." || segment === "..") return { ok: false, reason: "'.' and '..' are not allowed in a path here" };
    if (segment.length > LONGEST_SEGMENT) return { ok: false, reason: `a name is longer than ${LONGEST_SEGMENT} characters` };
  }
  const folders: string[] = [];
  for (let end = 1; end < segments.length; end += 1) folders.push(segments.slice(0, end).join("/"));
  return { ok: true, path: segments.join("/"), folders };
}

/** The `n`-th name that keeps both files: `received/x.csv` → `received/x (1).csv`. */
export function numberedPath(path: string, n: number): string {
  if (n <= 0) return path;
  const slash = path.lastIndexOf("/");
  const folder = path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const dot = name.indexOf(".", 1);
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const suffix = dot > 0 ? name.slice(dot) : "";
  return `${folder}${stem} (${n})${suffix}`;
}

/** The fields an offer carries when it answers a copy request of ours (`request`, `cell`, `cell_id`). */
export function copyFieldsOf(content: Record<string, Json>): { request?: string; cell?: number | null; cellId?: string | null } {
  const request = content.request;
  if (typeof request !== "string" || !request || request.length > 100) return {};
  const cell = content.cell;
  const cellId = content.cell_id;
  return {
    request,
    cell: typeof cell === "number" && Number.isInteger(cell) && cell >= 0 ? cell : null,
    cellId: typeof cellId === "string" && cellId.length <= 100 ? cellId : null,
  };
}

/**
 * The copy requests one window takes from others: one waiting per person (another while
 * one waits is dropped), none from a person for `cooldownMs` after one of theirs was
 * declined or expired, at most `maxWaiting` waiting in all. What a hostile member can do
 * with requests is one question at a time, then a minute of silence.
 */
export class RequestGate {
  private readonly waiting = new Map<string, string>();
  private readonly quietUntil = new Map<string, number>();

  constructor(
    readonly cooldownMs = 60_000,
    readonly maxWaiting = 5,
  ) {}

  /** Whether a request `id` from `person` may be shown now (it is then waiting). */
  admit(person: string, id: string, now: number = Date.now()): boolean {
    if (this.waiting.has(person)) return false;
    if ((this.quietUntil.get(person) ?? 0) > now) return false;
    if (this.waiting.size >= this.maxWaiting) return false;
    this.waiting.set(person, id);
    return true;
  }

  /** The request `id` of `person` was answered: `declined` (or expired) makes them wait. */
  answered(person: string, id: string, declined: boolean, now: number = Date.now()): void {
    if (this.waiting.get(person) !== id) return;
    this.waiting.delete(person);
    if (declined) this.quietUntil.set(person, now + this.cooldownMs);
  }

  isWaiting(person: string, id: string): boolean {
    return this.waiting.get(person) === id;
  }
}
