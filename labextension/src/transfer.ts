/**
 * A file on its way between two people, as both sides show it, and what the Collaboration
 * hands the plugins about files and control messages (plugins/files.ts, copies.ts).
 */

import type { JoinedRoom } from "./collaboration";
import type { Json } from "./model";

/** A file on its way between two windows (or a window and a kernel), as both sides show it. */
export interface Transfer {
  id: string;
  direction: "send" | "receive";
  /** The other person. */
  userId: string;
  name: string;
  size: number;
  done: number;
  /** "sent": the bytes went, the receiver has not said what became of them (yet). */
  state: "offered" | "accepted" | "sending" | "sent" | "receiving" | "done" | "declined" | "failed";
  /** Where it is saved: the receiver's choice (on the sender's side, as the receiver said). */
  path: string | null;
  error: string | null;
  room: string;
  /** On the receiver's side: what to do if `path` exists when the bytes come (never asked again then). */
  onExisting?: "replace" | "keep-both";
  /** A copy asked for (a copy request): its id, and where the sender was in the document. */
  request?: string;
  cell?: number | null;
  cellId?: string | null;
  /** the bytes, on the sender's side until sent */
  data?: Uint8Array;
  /** the other side's peer id (the receiver's, once it accepted) */
  peerId?: string;
}

/** A control message of a kind the Collaboration leaves to a plugin (a copy request...). */
export interface ControlEvent {
  room: JoinedRoom;
  /** Who sent it (the server verified it). */
  from: string;
  kind: string;
  content: Record<string, Json>;
}

/** An offer of a file, handed to the window to accept (and choose where it goes) or decline. */
export interface Offer {
  transfer: Transfer;
}
