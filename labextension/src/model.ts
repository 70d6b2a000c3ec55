/**
 * The side panel's logic that needs neither JupyterLab nor a browser: who is where, what
 * a message mentions, the @completion, dates, the unread count and marker, what "follow"
 * does. Unit-tested under node's test runner (test/model.test.mjs, on the compiled lib/).
 */

import { withoutHidden } from "./names.js";

/** A JSON value, as presence states and payloads hold them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A member as the room's snapshot describes it (the browser client's `Member`). */
export interface MemberLike {
  user_id: string;
  identity?: { username?: string; name?: string; display_name?: string; [field: string]: unknown };
  state?: Record<string, Json>;
  connections?: number;
}

/** One connection of a member (a browser tab, a kernel), as it described itself. */
export interface ConnectionInfo {
  peer_id: string;
  kind: string;
  document?: string | null;
  notebook?: string | null;
}

/** A member as the panel shows it: one row per identity. */
export interface PersonRow {
  userId: string;
  /** The name to show: the presence state's chosen name, else the verified display name. */
  label: string;
  /** The verified username (what cannot be chosen). */
  username: string;
  status: string;
  /** "eda.ipynb · cell 4", or "" when the member reports no document. */
  where: string;
  connections: number;
  you: boolean;
}

/** What a JupyterLab window reports as its presence: which document and cell, and who. */
export interface LabPresence {
  kind: "lab";
  status: string;
  display_name: string;
  /** The document open in the main area (its path on the server), or null. */
  document: string | null;
  /** The active cell's index (0-based) in a notebook, or null. */
  cell: number | null;
  /** The active cell's id (nbformat 4.5), so a follower finds it when cells moved. */
  cell_id: string | null;
  /** The base URL of the server the document is on: a follower opens it only on the same one. */
  server: string;
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function integer(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;
}

/** Where a member is, in words: the document, and the cell (shown 1-based, as JupyterLab counts). */
export function whereOf(state: Record<string, Json> | undefined): string {
  const document = text(state?.document) || text(state?.notebook);
  if (!document) return "";
  const cell = integer(state?.cell);
  return cell === null ? document : `${document} · cell ${cell + 1}`;
}

/** The rows of the members list: ourselves first, then by label, one row per member. */
export function peopleOf(members: Iterable<MemberLike>, me: string | null): PersonRow[] {
  const rows: PersonRow[] = [];
  for (const member of members) {
    const state = member.state ?? {};
    const identity = member.identity ?? {};
    const username = text(identity.username) || text(identity.name) || member.user_id;
    const chosen = text(state.display_name).trim();
    rows.push({
      userId: member.user_id,
      label: chosen || text(identity.display_name) || member.user_id,
      username,
      status: text(state.status),
      where: whereOf(state),
      connections: typeof member.connections === "number" ? member.connections : 1,
      you: member.user_id === me,
    });
  }
  return rows.sort((a, b) => Number(b.you) - Number(a.you) || a.label.localeCompare(b.label) || (a.userId < b.userId ? -1 : 1));
}

/** How many people are online over all rooms: distinct members, ourselves not counted. */
export function peopleOnline(rooms: Iterable<Iterable<MemberLike>>, me: string | null): number {
  const seen = new Set<string>();
  for (const members of rooms) for (const member of members) if (member.user_id !== me) seen.add(member.user_id);
  return seen.size;
}

// -- mentions ---------------------------------------------------------------------------

/** A member name as it can follow `@`: the names the server accepts have no spaces. */
const MENTION = /(^|[^\w@])@([^\s@]+)/gu;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}'"»]+$/u;

/** The user ids a message mentions (`@bob`, `@bob,`), among `names`. */
export function mentionsIn(message: string, names: Iterable<string>): Set<string> {
  const known = new Set(names);
  const found = new Set<string>();
  for (const match of message.matchAll(MENTION)) {
    const name = match[2];
    for (const candidate of [name, name.replace(TRAILING_PUNCTUATION, "")]) {
      if (known.has(candidate)) {
        found.add(candidate);
        break;
      }
    }
  }
  return found;
}

/** Whether `message` mentions `me` (or everyone, `@all`/`@here`). */
export function mentions(message: string, me: string | null): boolean {
  if (!me) return false;
  const found = mentionsIn(message, [me, "all", "here"]);
  return found.size > 0;
}

/** The `@word` being typed at `caret`: where it starts (the `@`) and what is typed after it. */
export function mentionQuery(value: string, caret: number): { start: number; query: string } | null {
  const before = value.slice(0, caret);
  const match = /(^|\s)@([^\s@]*)$/u.exec(before);
  if (!match) return null;
  return { start: before.length - match[2].length - 1, query: match[2] };
}

/** The names that complete `query`: those starting with it first, then those containing it. */
export function completions(query: string, names: Iterable<string>, limit = 8): string[] {
  const lower = query.toLowerCase();
  const all = [...new Set(names)].sort((a, b) => a.localeCompare(b));
  const starting = all.filter((name) => name.toLowerCase().startsWith(lower));
  const containing = all.filter((name) => !name.toLowerCase().startsWith(lower) && name.toLowerCase().includes(lower));
  return [...starting, ...containing].slice(0, limit);
}

/** The input's value and caret after choosing `name` for the `@word` at `caret`. */
export function completeMention(value: string, caret: number, name: string): { value: string; caret: number } {
  const query = mentionQuery(value, caret);
  if (!query) return { value, caret };
  const after = value.slice(caret).replace(/^[^\s@]*/u, "");
  const inserted = `@${name} `;
  const rest = after.startsWith(" ") ? after.slice(1) : after;
  return { value: value.slice(0, query.start) + inserted + rest, caret: query.start + inserted.length };
}

// -- dates ------------------------------------------------------------------------------

function localDay(date: Date): string {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
}

/** The heading of a day's messages: "Today", "Yesterday", or the date (local time). */
export function dayLabel(timestamp: string, now: Date = new Date()): string {
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return "";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (localDay(date) === localDay(now)) return "Today";
  if (localDay(date) === localDay(yesterday)) return "Yesterday";
  return date.toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
}

/** Whether a day heading goes before a message: the first, or one on another local day than the last. */
export function startsDay(previous: string | null, timestamp: string): boolean {
  if (previous === null) return true;
  const a = new Date(previous);
  const b = new Date(timestamp);
  if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) return false;
  return localDay(a) !== localDay(b);
}

/** The time of a message, hours and minutes (local). */
export function timeLabel(timestamp: string): string {
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return "";
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
}

// -- unread -----------------------------------------------------------------------------

/**
 * Messages not seen yet: counted while the reader cannot see the end of the chat (the
 * panel hidden, or scrolled up), with the marker before the first of them.
 */
export class UnreadTracker {
  /** How many messages came that the reader has not seen. */
  count = 0;
  /** The position (in messages shown) of the first unseen one, or null. */
  marker: number | null = null;
  /** How many of the unseen mention the reader (or are direct to them). */
  mentions = 0;

  /** A message shown at `index`; `seen`: the reader sees the end of the chat now. Answers whether it is unread. */
  arrived(index: number, seen: boolean, mentionsMe = false): boolean {
    if (seen) {
      // read as it came; an older marker stays until the reader has seen the end
      return false;
    }
    if (this.marker === null) this.marker = index;
    this.count += 1;
    if (mentionsMe) this.mentions += 1;
    return true;
  }

  /** The reader saw the end: nothing is unread (the marker stays where it was, to show what was new). */
  read(): void {
    this.count = 0;
    this.mentions = 0;
  }

  /** Forget the marker too (the reader wrote, or switched rooms). */
  clear(): void {
    this.read();
    this.marker = null;
  }
}

// -- follow -----------------------------------------------------------------------------

export type FollowTarget =
  | { open: true; path: string; cell: number | null; cellId: string | null }
  | { open: false; path: string; reason: string };

/** What following a member does: open their document here, or only say where it is. */
export function followTarget(state: Record<string, Json> | undefined, ourServer: string): FollowTarget | null {
  const path = text(state?.document) || text(state?.notebook);
  if (!path) return null;
  const server = text(state?.server);
  if (server && server === ourServer) {
    return { open: true, path, cell: integer(state?.cell), cellId: text(state?.cell_id) || null };
  }
  const reason = server ? `it is on another server (${server})` : "their connection does not say which server it is on";
  return { open: false, path, reason };
}

/** The presence a JupyterLab window reports for what it shows now. */
export function labPresence(options: {
  status: string;
  displayName: string;
  document: string | null;
  cell: number | null;
  cellId: string | null;
  server: string;
}): LabPresence {
  return {
    kind: "lab",
    status: options.status,
    display_name: options.displayName,
    document: options.document,
    cell: options.cell,
    cell_id: options.cellId,
    server: options.server,
  };
}

/** Whether two presence states differ in what the others see (so a change is worth sending). */
export function samePresence(a: Record<string, unknown> | null, b: Record<string, unknown>): boolean {
  if (!a) return false;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const key of keys) if (a[key] !== b[key]) return false;
  return true;
}

/** A line with nothing Markdown would change: no markup, link, list, entity or line break. */
const PLAIN = /^(?!\d+[.)]\s)(?!www\.)[\p{L}\p{N}\p{Zs},.;?!'"()@]*$/u;

/** Whether Markdown would show `text` as it is: the chat then shows it as text, without
 * running the renderer (most lines of a chat, and every line of a flood of plain text). */
export function isPlain(text: string): boolean {
  return PLAIN.test(text);
}

/**
 * The rooms a window joins when it opens: those the server remembers for the person (any
 * window, tab, kernel or device joined them; newest first), then the settings' rooms the
 * person has not forgotten; each once, oldest first so the newest is joined last.
 */
export function roomsToRejoin(remembered: readonly string[], fromSettings: readonly string[]): string[] {
  const ordered = [...remembered].reverse();
  for (const room of fromSettings) if (!ordered.includes(room)) ordered.unshift(room);
  return [...new Set(ordered)];
}

/** The text of a room message: the seed's `content` field, as the other clients put it. */
export function messageText(content: Record<string, Json> | undefined): string {
  const value = content?.content;
  if (typeof value === "string") return value;
  return value === undefined ? "" : JSON.stringify(value);
}

/** A connection's line in a member's list: "kernel bob#3f2a1c · eda.ipynb". */
export function connectionLabel(connection: ConnectionInfo): string {
  const where = connection.document || connection.notebook || "";
  return where ? `${connection.kind} ${connection.peer_id} · ${where}` : `${connection.kind} ${connection.peer_id}`;
}

// -- files ------------------------------------------------------------------------------

/**
 * The name an offered file is suggested under: its last path segment, without control
 * characters, never "." or ".."; whatever a sender writes cannot point elsewhere.
 */
export function safeFileName(name: unknown): string {
  const text = typeof name === "string" ? name : "";
  const last = text.split(/[/\\]/u).pop()?.replace(/[\u0000-\u001f\u007f]/gu, "").trim() ?? "";
  const bounded = last.slice(0, 200);
  return bounded && bounded !== "." && bounded !== ".." ? bounded : "received-file";
}

/**
 * The path a received file is suggested at: in the folder the file browser shows, its name
 * without hidden characters (`report\u202Efdp.py` is saved as `reportfdp.py`, what it is).
 */
export function suggestedPath(folder: string, name: string): string {
  const safe = safeFileName(withoutHidden(name));
  const base = folder.replace(/\/+$/u, "");
  return base ? `${base}/${safe}` : safe;
}

/** An offer as a control message carries it, checked; null when it is not one. */
export function parseOffer(content: Record<string, Json>): { id: string; name: string; size: number; peerId: string | null } | null {
  const id = content.id;
  if (typeof id !== "string" || !id || id.length > 100) return null;
  const size = content.size;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 0) return null;
  const peerId = typeof content.peer_id === "string" ? content.peer_id : null;
  return { id, name: safeFileName(content.name), size, peerId };
}

/** Whether a file's bytes may be taken: one we accepted, coming from the person who offered it. */
export function mayReceive(transfer: { direction: string; state: string; userId: string } | undefined, fromUser: string | undefined): boolean {
  return transfer !== undefined && transfer.direction === "receive" && transfer.state === "accepted" && transfer.userId === fromUser;
}
