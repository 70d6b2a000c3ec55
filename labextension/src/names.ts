/**
 * How the panel names a person and a file: one function makes a name safe to show
 * (`safeName`), one says who a person is (`personOf`, `personText`). The verified
 * username (`@bob`, what the server read from the login) always leads; a name a person
 * chose (a display name, a user_id under the free name policy) only follows it, so
 * bob calling himself "alice" reads "@bob (alice)" everywhere: message headers, the
 * members list, notifications, file offers, follow.
 *
 * As the demo page (static/demo.js `safeName`) and the notebook panel
 * (iavicenne.panels.text `safe_name`) do.
 */

/**
 * What changes how a name reads without being seen: C0 and C1 controls, bidi marks,
 * embeddings, overrides and isolates (U+202E makes `report\u202Efdp.py` read
 * `reportyp.pdf`), zero-width and other invisible format characters, tags.
 */
const HIDDEN =
  /[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb]|[\u{e0000}-\u{e0fff}]/gu;

/** `[U+202E]`: a hidden character, as the reader sees it. */
function visible(char: string): string {
  return `[U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`;
}

/** A name (of a person, a room, a file) as it may be shown: every hidden character written out. */
export function safeName(value: unknown): string {
  const text = typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
  return text.replace(HIDDEN, visible);
}

/** A name without its hidden characters at all (a file name to save under). */
export function withoutHidden(value: string): string {
  return value.replace(HIDDEN, "");
}

/** A member as the room's presence describes it: its user_id, verified identity and state. */
export interface NamedMember {
  user_id: string;
  identity?: { username?: unknown; name?: unknown; display_name?: unknown; [field: string]: unknown };
  state?: { [key: string]: unknown };
}

/** Who a person is, as shown: the verified `@username` first, and the name they chose. */
export interface Person {
  /** The verified username, safe to show (or the user_id when the server did not say). */
  username: string;
  /** The name they chose (their display name), safe to show; "" when it is their username. */
  chosen: string;
  /** False when the server's verified identity is not known (a sender no longer in the room). */
  verified: boolean;
}

function text(value: unknown): string {
  return typeof value === "string" ? value.trim() : "";
}

/**
 * Who `userId` is, from its member entry (`member`, if it is in the room or was seen): its
 * verified username, and the display name it chose (the presence state's, else the
 * identity's, else the user_id) when that is not the username itself.
 */
export function personOf(member: NamedMember | undefined, userId: string): Person {
  const identity = member?.identity ?? {};
  const verified = text(identity.username);
  const username = safeName(verified || userId);
  const chosen = safeName(text(member?.state?.display_name) || text(identity.display_name) || member?.user_id || userId);
  return { username, chosen: chosen === username ? "" : chosen, verified: Boolean(verified) };
}

/** A person in a sentence: "@bob (alice)", "@bob" when the chosen name is the username. */
export function personText(person: Person): string {
  return person.chosen ? `@${person.username} (${person.chosen})` : `@${person.username}`;
}
