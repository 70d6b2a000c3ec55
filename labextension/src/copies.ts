/**
 * A copy of the document a member looks at, when it is on another server (follow across
 * servers): "Ask for a copy" sends them a `copy-request`; their window shows it (Send a
 * copy / Decline); sending is the ordinary file offer over the peer link, naming the
 * request and where they are (`cell`, `cell_id`), which the asker's window takes without
 * asking again, saves where the asker chose when asking and opens at that cell.
 *
 * What a hostile member cannot do with it (docs/protocol.md, "A copy of what a member
 * looks at"): make our window send or open a path of its choosing (a request is shown only
 * for the document we show at that moment, and sends only when we click; an offer is taken
 * without a question only when it answers a request we sent to that very person), nor
 * fill our screen with requests (`RequestGate`: one waiting per person, a minute of
 * silence after a decline, five waiting in all; unanswered ones expire in two minutes).
 */

import type { JupyterFrontEnd } from "@jupyterlab/application";
import { Notification } from "@jupyterlab/apputils";
import type { IDocumentManager } from "@jupyterlab/docmanager";
import { NotebookPanel } from "@jupyterlab/notebook";

import type { Collaboration, ControlEvent, Transfer } from "./collaboration";
import type { Json } from "./model";
import { personOf, personText, safeName, type NamedMember } from "./names";
import { RequestGate } from "./received";

/** How long a request waits for an answer, on either side. */
const REQUEST_TTL_MS = 120_000;
/** The largest document sent, or taken without a question, as a copy (the peer link's own bound is larger). */
const MAX_COPY_BYTES = 64 * 1024 * 1024;

/** Open `path` here and show `cell` (by its id first, cells may have moved). */
export async function openAt(docManager: IDocumentManager, path: string, cell: number | null, cellId: string | null): Promise<void> {
  const widget = docManager.openOrReveal(path);
  if (!(widget instanceof NotebookPanel)) return;
  await widget.context.ready;
  await widget.revealed;
  const notebook = widget.content;
  let index = cell ?? -1;
  if (cellId) {
    const found = notebook.widgets.findIndex((one) => one.model.id === cellId);
    if (found >= 0) index = found;
  }
  if (index >= 0 && index < notebook.widgets.length) {
    notebook.activeCellIndex = index;
    await notebook.scrollToItem(index).catch(() => {});
  }
}

interface Asked {
  room: string;
  user: string;
  /** Where the copy is saved here (chosen when asking) and what to do if it exists by then. */
  saveAt: string;
  onExisting: "replace" | "keep-both";
  timer: ReturnType<typeof setTimeout>;
}

export class CopyRequests {
  /** request id -> a request of ours waiting for its answer */
  private readonly asked = new Map<string, Asked>();
  /** transfer ids of copies on their way to us: opened once saved */
  private readonly coming = new Set<string>();
  private readonly gate = new RequestGate();

  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly collaboration: Collaboration,
    private readonly docManager: IDocumentManager | null,
  ) {
    collaboration.control.connect((_, event) => this.onControl(event));
    collaboration.claims.push((transfer) => this.claim(transfer));
    collaboration.changed.connect(() => this.openArrived());
  }

  /** The protocol's names, from the client module (loaded before any room is joined). */
  private get protocol(): NonNullable<Collaboration["module"]> {
    const module = this.collaboration.module;
    if (!module) throw new Error("iavicenne: the client module is not loaded");
    return module;
  }

  private who(room: string, user: string): string {
    const member = this.collaboration.rooms.get(room)?.room.members.get(user);
    return personText(personOf(member as NamedMember | undefined, user));
  }

  /** Ask `user` in `room` for a copy of `theirPath` (what their presence shows), saved here at `saveAt`. */
  async ask(room: string, user: string, theirPath: string, saveAt: string, onExisting: "replace" | "keep-both"): Promise<void> {
    const joined = this.collaboration.rooms.get(room);
    if (!joined) throw new Error(`not in room ${room}`);
    for (const [id, asked] of this.asked) if (asked.user === user) this.forget(id); // one request per person: the newest
    const id = `c-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
    const timer = setTimeout(() => {
      if (!this.asked.has(id)) return;
      this.forget(id);
      Notification.warning(`${this.who(room, user)} did not answer your request for ${safeName(theirPath)}`, { autoClose: 8000 });
    }, REQUEST_TTL_MS);
    this.asked.set(id, { room, user, saveAt, onExisting, timer });
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined.room.direct(user, { [CONTROL_KEY]: ControlKind.COPY_REQUEST, id, path: theirPath, peer_id: this.collaboration.peerId });
    Notification.info(`Asked ${this.who(room, user)} for a copy of ${safeName(theirPath)}`, { autoClose: 5000 });
  }

  /** Requests of ours waiting for an answer (for the tests and the follow bar). */
  get waiting(): number {
    return this.asked.size;
  }

  private forget(id: string): void {
    const asked = this.asked.get(id);
    if (asked) clearTimeout(asked.timer);
    this.asked.delete(id);
  }

  /** An offer that answers a request we sent to that very person: accepted without asking. */
  private claim(transfer: Transfer): boolean {
    const id = transfer.request;
    const asked = id ? this.asked.get(id) : undefined;
    if (!id || !asked || asked.user !== transfer.userId || asked.room !== transfer.room) return false;
    this.forget(id);
    if (transfer.size > MAX_COPY_BYTES) {
      void this.collaboration.declineFile(transfer.id, `a copy over ${MAX_COPY_BYTES / 1024 / 1024} MiB is not taken without asking`);
      return true;
    }
    this.coming.add(transfer.id);
    void this.collaboration.acceptFile(transfer.id, asked.saveAt, asked.onExisting);
    return true;
  }

  /** Copies that arrived: opened at the sender's cell; one that failed says why. */
  private openArrived(): void {
    for (const id of [...this.coming]) {
      const transfer = this.collaboration.transfers.get(id);
      if (!transfer || transfer.state === "done" || transfer.state === "failed" || transfer.state === "declined") this.coming.delete(id);
      if (!transfer) continue;
      if (transfer.state === "done" && transfer.path && this.docManager) {
        void openAt(this.docManager, transfer.path, transfer.cell ?? null, transfer.cellId ?? null);
      } else if (transfer.state === "failed") {
        Notification.error(`The copy of ${safeName(transfer.name)} was not saved: ${safeName(transfer.error ?? "")}`, { autoClose: false });
      }
    }
  }

  private onControl({ room, from, kind, content }: ControlEvent): void {
    const { ControlKind, FILE_ID_MAX_LENGTH } = this.protocol;
    const id = typeof content.id === "string" && content.id.length <= FILE_ID_MAX_LENGTH ? content.id : "";
    if (!id || from === this.collaboration.me) return;
    if (kind === ControlKind.COPY_DECLINE) {
      const asked = this.asked.get(id);
      if (!asked || asked.user !== from) return; // only the person asked answers for it
      this.forget(id);
      const reason = typeof content.reason === "string" ? `: ${safeName(content.reason.slice(0, 300))}` : "";
      Notification.info(`${this.who(room.name, from)} did not send a copy${reason}`, { autoClose: 8000 });
      return;
    }
    if (kind !== ControlKind.COPY_REQUEST || typeof content.path !== "string") return;
    if (!this.gate.admit(from, id)) return; // one at a time per person, none for a minute after a decline
    const shown = this.collaboration.currentPresence;
    if (!shown.document || content.path !== shown.document) {
      // only what we show now, never a path the asker chose: answered at once, nothing shown
      this.gate.answered(from, id, true);
      void this.decline(room.name, from, id, "not looking at that document now");
      return;
    }
    this.showRequest(room.name, from, id, shown.document, shown.cell, shown.cell_id);
  }

  private showRequest(room: string, from: string, id: string, path: string, cell: number | null, cellId: string | null): void {
    let notice = "";
    const expire = setTimeout(() => {
      if (!this.gate.isWaiting(from, id)) return;
      this.gate.answered(from, id, true);
      Notification.dismiss(notice);
      void this.decline(room, from, id, "not answered");
    }, REQUEST_TTL_MS);
    const answer = (send: boolean) => {
      clearTimeout(expire);
      if (!this.gate.isWaiting(from, id)) return;
      this.gate.answered(from, id, !send);
      if (send) void this.sendCopy(room, from, id, path, cell, cellId);
      else void this.decline(room, from, id, `${this.collaboration.me ?? "they"} declined`);
    };
    notice = Notification.info(`${this.who(room, from)} asks for a copy of ${safeName(path)} (what you are looking at)`, {
      autoClose: false,
      actions: [
        { label: "Send a copy", callback: () => answer(true) },
        { label: "Decline", callback: () => answer(false) },
      ],
    });
  }

  private async decline(room: string, to: string, id: string, reason: string): Promise<void> {
    const joined = this.collaboration.rooms.get(room);
    const { CONTROL_KEY, ControlKind } = this.protocol;
    await joined?.room.direct(to, { [CONTROL_KEY]: ControlKind.COPY_DECLINE, id, reason }).catch(() => {});
  }

  private async sendCopy(room: string, to: string, id: string, path: string, cell: number | null, cellId: string | null): Promise<void> {
    try {
      const contents = this.app.serviceManager.contents;
      const model = await contents.get(path, { content: false });
      if (typeof model.size === "number" && model.size > MAX_COPY_BYTES) throw new Error(`${path} is over ${MAX_COPY_BYTES / 1024 / 1024} MiB`);
      const file = await contents.get(path, { type: "file", format: "base64", content: true });
      const bytes = Uint8Array.from(atob(String(file.content).replace(/\s/g, "")), (c) => c.charCodeAt(0));
      const extra: Record<string, Json> = { request: id, cell, cell_id: cellId };
      await this.collaboration.offerFile(room, to, path.split("/").pop() ?? path, bytes, extra);
    } catch (error) {
      const why = String((error as Error)?.message ?? error);
      Notification.error(`The copy of ${safeName(path)} was not sent: ${safeName(why)}`, { autoClose: false });
      await this.decline(room, to, id, `could not read it: ${why}`);
    }
  }
}
