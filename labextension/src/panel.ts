/**
 * The side panel: the rooms one may join (with member counts), and for the room chosen its
 * members (status, where they are, their connections) and its chat.
 *
 * Every string from another person goes in as text (`textContent`); a chat message's
 * Markdown only through JupyterLab's Markdown renderer with an untrusted model, which
 * passes it through JupyterLab's sanitizer, then `InertSanitizer` (nothing is fetched
 * when a message is shown: an image is a link). A person is named by their verified
 * `@username` first (names.ts), and every name and file name through `safeName`.
 *
 * The chat itself is `ChatLog` (chatlog.ts): a bounded window of messages, rendered once
 * per frame. What a message changes besides (the rooms' unread counts, the tab's badge) is
 * also redrawn once per frame, not once per message. Beside each person: *Mute* (for this
 * person only, kept in the settings) and, for the room's owner, mute or remove them for
 * the room (the server enforces it).
 */

import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { Widget } from "@lumino/widgets";

import { ChatLog } from "./chatlog";
import type { ChatEntry, Collaboration, JoinedRoom } from "./collaboration";
import { InertSanitizer } from "./inert";
import { completeMention, completions, connectionLabel, mentionQuery, peopleOf } from "./model";
import { type NamedMember, type Person, personOf, personText, safeName } from "./names";

function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A person as a header or a row shows them: `@username` (verified) then the name they chose. */
export function personNodes(person: Person, className: string): HTMLElement[] {
  const id = element("span", `${className}-id`, `@${person.username}`);
  id.title = person.verified ? "verified username" : "not in the room now: the name the server accepted";
  const nodes: HTMLElement[] = [id];
  if (person.chosen) nodes.push(element("span", className, person.chosen));
  return nodes;
}

export interface PanelActions {
  follow(room: string, userId: string): void;
}

export class RoomsPanel extends Widget {
  /** The room whose members and chat are shown. */
  current: string | null = null;
  private readonly stateLine = element("div", "iav-lab-state");
  private readonly roomsList = element("ul", "iav-lab-rooms");
  private readonly joinInput = element("input", "iav-lab-join-input");
  /** Why the last join failed (kept until a join succeeds: presence changes redraw the state line). */
  private readonly joinError = element("div", "iav-lab-join-error");
  private readonly membersList = element("ul", "iav-lab-members");
  private readonly chat = element("div", "iav-lab-chat");
  private readonly log: ChatLog;
  private readonly toSelect = element("select", "iav-lab-to");
  private readonly input = element("textarea", "iav-lab-input");
  private readonly completion = element("ul", "iav-lab-completion");
  private readonly roomTitle = element("h3", "iav-lab-room-title");
  private readonly transfersSection = element("section", "iav-lab-section iav-lab-transfers");
  private readonly transfersList = element("ul", "iav-lab-transfer-list");
  private completionItems: string[] = [];
  private completionIndex = 0;
  /** A frame is asked for: the rooms' unread counts and the badge, redrawn once per frame. */
  private countsFrame: number | null = null;
  /** room -> user_id -> the member last seen under it: who sent a message after they left. */
  private readonly seenMembers = new Map<string, Map<string, NamedMember>>();
  /** The chat's Markdown renderers: JupyterLab's, with `InertSanitizer` after its sanitizer. */
  private readonly chatRendermime: IRenderMimeRegistry;

  constructor(
    private readonly collaboration: Collaboration,
    rendermime: IRenderMimeRegistry,
    private readonly actions: PanelActions,
  ) {
    super();
    this.id = "iavicenne-panel";
    this.addClass("iav-lab-panel");
    this.title.caption = "iAvicenne: rooms, people and chat";
    this.chatRendermime = rendermime.clone({ sanitizer: new InertSanitizer(rendermime.sanitizer) });
    this.log = new ChatLog(
      { personIn: (joined, userId) => this.personIn(joined, userId), personNodes, read: () => this.markRead() },
      this.chatRendermime,
    );
    this.build();
    collaboration.changed.connect(() => this.render(), this);
    collaboration.arrived.connect((_, { room, entry, position }) => this.onArrived(room, entry, position), this);
  }

  /** Unread messages over all rooms (the tab's badge). */
  get unread(): number {
    let count = 0;
    for (const joined of this.collaboration.rooms.values()) count += joined.unread.count;
    return count;
  }

  private build(): void {
    const node = this.node;
    const header = element("div", "iav-lab-header");
    header.append(element("span", "iav-lab-brand", "iAvicenne"), this.stateLine);
    const rooms = element("section", "iav-lab-section");
    const form = element("form", "iav-lab-join");
    this.joinInput.placeholder = "room name";
    this.joinInput.setAttribute("aria-label", "room to join");
    const joinButton = element("button", "jp-mod-styled", "Join");
    joinButton.type = "submit";
    form.append(this.joinInput, joinButton);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = this.joinInput.value.trim();
      if (!name) return;
      this.joinInput.value = "";
      void this.joinAndShow(name);
    });
    this.joinError.hidden = true;
    this.joinError.setAttribute("role", "alert");
    rooms.append(element("h3", "", "Rooms"), this.roomsList, form, this.joinError);

    const members = element("section", "iav-lab-section");
    members.append(this.roomTitle, this.membersList);

    const compose = element("div", "iav-lab-compose");
    this.input.rows = 2;
    this.input.placeholder = "Message (Enter to send, Shift+Enter for a new line, @ to mention)";
    this.input.setAttribute("aria-label", "message");
    this.toSelect.setAttribute("aria-label", "send to");
    this.completion.hidden = true;
    this.input.addEventListener("keydown", (event) => this.onKeyDown(event));
    this.input.addEventListener("input", () => this.updateCompletion());
    compose.append(this.toSelect, this.completion, this.input);
    this.chat.append(this.log.node, this.log.jumpButton, compose);
    this.transfersSection.append(element("h3", "", "Files"), this.transfersList);
    node.append(header, rooms, members, this.transfersSection, this.chat);
    this.render();
  }

  async joinAndShow(name: string): Promise<void> {
    try {
      await this.collaboration.join(name);
      this.joinError.hidden = true;
      this.joinError.textContent = "";
      this.showRoom(name);
    } catch (error) {
      this.joinError.textContent = `could not join ${safeName(name)}: ${safeName((error as Error).message)}`;
      this.joinError.hidden = false;
    }
  }

  /** Show room `name`'s members and chat. */
  showRoom(name: string): void {
    if (this.current !== name) {
      this.current = name;
      this.log.show(this.collaboration.rooms.get(name) ?? null);
    }
    this.render();
  }

  protected onUpdateRequest(): void {
    this.render();
  }

  protected onAfterShow(): void {
    if (this.log.atEnd) this.log.toEnd(); // hidden, it could not scroll as messages came
    this.markRead();
  }

  render(): void {
    const collaboration = this.collaboration;
    const state = collaboration.state;
    if (this.stateLine.dataset.state !== "error" || state === "online") {
      this.stateLine.dataset.state = state;
      const who = collaboration.me ? ` as ${safeName(collaboration.me)}` : "";
      this.stateLine.textContent = state === "failed" ? `not connected: ${collaboration.problem}` : `${state}${who}`;
    }
    if (this.current && !collaboration.rooms.has(this.current)) this.current = null;
    if (!this.current && collaboration.rooms.size) this.showRoom(collaboration.rooms.keys().next().value as string);
    this.renderRooms();
    this.renderMembers();
    this.renderTransfers();
    this.chat.hidden = this.current === null;
    this.updateBadge();
  }

  private renderRooms(): void {
    const collaboration = this.collaboration;
    const names = new Map<string, number>();
    for (const listed of collaboration.listing) names.set(listed.room, listed.members);
    for (const [name, joined] of collaboration.rooms) names.set(name, joined.room.members.size);
    const items: HTMLElement[] = [];
    for (const [name, count] of [...names].sort((a, b) => a[0].localeCompare(b[0]))) {
      const joined = collaboration.rooms.get(name);
      const item = element("li", "iav-lab-room");
      item.dataset.room = name;
      if (name === this.current) item.classList.add("iav-lab-current");
      const label = element("button", "iav-lab-room-name", safeName(name));
      label.title = joined ? `show ${name}` : `join ${name}`;
      label.addEventListener("click", () => void this.joinAndShow(name));
      const members = element("span", "iav-lab-count", `${count} ${count === 1 ? "member" : "members"}`);
      const unread = joined?.unread.count ?? 0;
      const badge = element("span", "iav-lab-room-unread", unread ? String(unread) : "");
      badge.hidden = unread === 0;
      const action = element("button", "iav-lab-room-action jp-mod-styled", joined ? "Leave" : "Join");
      action.addEventListener("click", () => {
        if (joined) void collaboration.leave(name);
        else void this.joinAndShow(name);
      });
      item.append(label, members, badge, action);
      items.push(item);
    }
    this.roomsList.replaceChildren(...items);
  }

  private renderMembers(): void {
    const joined = this.current ? this.collaboration.rooms.get(this.current) : undefined;
    this.roomTitle.textContent = joined ? `People in ${safeName(joined.name)}` : "Join a room to see who is there";
    if (!joined) {
      this.membersList.replaceChildren();
      this.toSelect.replaceChildren();
      return;
    }
    const rows = peopleOf(joined.room.members.values(), this.collaboration.me);
    const people = new Map(rows.map((row) => [row.userId, this.personIn(joined, row.userId)]));
    const items = rows.map((row) => {
      const person = people.get(row.userId) as Person;
      const item = element("li", "iav-lab-member");
      item.dataset.user = row.userId;
      const top = element("div", "iav-lab-member-top");
      top.append(...personNodes(person, "iav-lab-member-name"));
      if (row.you) top.append(element("span", "iav-lab-you", "(you)"));
      item.append(top);
      if (row.status) item.append(element("div", "iav-lab-member-status", row.status));
      if (row.where) item.append(element("div", "iav-lab-member-where", safeName(row.where)));
      const connections = element("button", "iav-lab-connections", `${row.connections} ${row.connections === 1 ? "connection" : "connections"}`);
      connections.title = "list their connections (browser tabs, kernels)";
      connections.addEventListener("click", () => void this.collaboration.describe(joined.name, row.userId));
      const tools = element("div", "iav-lab-member-tools");
      tools.append(connections);
      if (!row.you && row.where) {
        const follow = element("button", "iav-lab-follow", "Follow");
        follow.title = `open what ${personText(person)} is looking at`;
        follow.addEventListener("click", () => this.actions.follow(joined.name, row.userId));
        tools.append(follow);
      }
      if (!row.you) tools.append(...this.muteTools(joined, row.username, personText(person)));
      if (joined.mutedByOwner.has(row.username)) top.append(element("span", "iav-lab-muted-label", "muted by the owner"));
      item.append(tools);
      const described = joined.connections.get(row.userId);
      if (described && described.length) {
        const list = element("ul", "iav-lab-connection-list");
        for (const connection of described) list.append(element("li", "iav-lab-connection", safeName(connectionLabel(connection))));
        item.append(list);
      }
      return item;
    });
    this.membersList.replaceChildren(...items);
    // the recipients: the room, or one of the others
    const chosen = this.toSelect.value;
    const options = [element("option", "", `Everyone in ${safeName(joined.name)}`)];
    options[0].value = "";
    for (const row of rows) {
      if (row.you) continue;
      const option = element("option", "", `Only ${personText(people.get(row.userId) as Person)} (direct)`);
      option.value = row.userId;
      options.push(option);
    }
    this.toSelect.replaceChildren(...options);
    this.toSelect.value = options.some((option) => option.value === chosen) ? chosen : "";
  }

  /**
   * A person's mute buttons: *Mute* for me (the settings keep it; their messages and
   * notifications are not shown), and for the room's owner *Mute in room* / *Remove*,
   * which the server enforces for everyone.
   */
  private muteTools(joined: JoinedRoom, username: string, who: string): HTMLElement[] {
    const collaboration = this.collaboration;
    const muted = collaboration.isMuted(username);
    const mine = element("button", "iav-lab-mute", muted ? "Unmute" : "Mute");
    mine.title = muted ? `show ${who}'s messages again (for you)` : `hide ${who}'s messages and notifications (for you only)`;
    mine.addEventListener("click", () => {
      void collaboration.setMuted(username, !muted).then(() => this.log.show(joined));
    });
    const tools: HTMLElement[] = [mine];
    if (collaboration.ownerOf(joined.name) === collaboration.username && username !== collaboration.username) {
      const roomMuted = joined.mutedByOwner.has(username);
      const mute = element("button", "iav-lab-room-mute", roomMuted ? "Unmute in room" : "Mute in room");
      mute.title = roomMuted ? `let ${who} write in the room again` : `refuse ${who}'s messages in this room, for everyone`;
      mute.addEventListener("click", () => void this.moderate(joined, username, roomMuted ? "unmute" : "mute"));
      const remove = element("button", "iav-lab-room-remove", "Remove");
      remove.title = `take ${who} out of this room; they cannot come back until readmitted`;
      remove.addEventListener("click", () => void this.moderate(joined, username, "remove"));
      tools.push(mute, remove);
    }
    return tools;
  }

  private async moderate(joined: JoinedRoom, username: string, action: "mute" | "unmute" | "remove"): Promise<void> {
    try {
      await this.collaboration.moderate(joined.name, username, action);
    } catch (error) {
      this.log.note(`${action} ${safeName(username)}: ${safeName((error as Error).message)}`, "iav-lab-error");
    }
  }

  private renderTransfers(): void {
    const transfers = [...this.collaboration.transfers.values()];
    this.transfersSection.hidden = transfers.length === 0;
    this.transfersList.replaceChildren(
      ...transfers.map((transfer) => {
        const item = element("li", "iav-lab-transfer");
        item.dataset.transfer = transfer.id;
        item.dataset.direction = transfer.direction;
        item.dataset.state = transfer.state;
        const joined = this.collaboration.rooms.get(transfer.room);
        const person = personText(joined ? this.personIn(joined, transfer.userId) : personOf(undefined, transfer.userId));
        const who = transfer.direction === "send" ? `to ${person}` : `from ${person}`;
        item.append(element("div", "iav-lab-transfer-name", `${safeName(transfer.name)} ${who}`));
        const bar = element("progress", "iav-lab-progress");
        bar.max = Math.max(transfer.size, 1);
        bar.value = Math.min(transfer.done, bar.max);
        const percent = transfer.size ? Math.round((100 * transfer.done) / transfer.size) : 0;
        const where = transfer.path ? ` → ${safeName(transfer.path)}` : "";
        const error = transfer.error ? `: ${safeName(transfer.error)}` : "";
        item.append(bar, element("div", "iav-lab-transfer-state", `${transfer.state} ${percent}%${where}${error}`));
        return item;
      }),
    );
  }

  // -- chat -----------------------------------------------------------------------------

  private seen(): boolean {
    return this.isVisible && document.visibilityState !== "hidden" && this.log.atEnd;
  }

  /** A message came: counted at once (no layout read), drawn with the others of its frame. */
  private onArrived(joined: JoinedRoom, entry: ChatEntry, position: number): void {
    const showing = joined.name === this.current;
    const seen = showing && (entry.mine || this.seen());
    if (entry.mine) joined.unread.clear();
    else joined.unread.arrived(position, seen, entry.mentionsMe);
    if (showing) this.log.arrived(joined, entry.mine);
    if (this.countsFrame === null) {
      this.countsFrame = requestAnimationFrame(() => {
        this.countsFrame = null;
        this.renderRooms();
        this.updateBadge();
      });
    }
  }

  /**
   * Who `userId` is in `joined` (names.ts): from its member entry now, else from the last
   * one seen (a message replayed after its sender left), else its user_id, unverified.
   */
  personIn(joined: JoinedRoom, userId: string): Person {
    let seen = this.seenMembers.get(joined.name);
    if (!seen) this.seenMembers.set(joined.name, (seen = new Map()));
    const member = (joined.room.members.get(userId) as NamedMember | undefined) ?? seen.get(userId);
    if (member && joined.room.members.has(userId)) seen.set(userId, member);
    return personOf(member, userId);
  }

  private markRead(): void {
    if (!this.current || !this.isVisible || document.visibilityState === "hidden") return;
    const joined = this.collaboration.rooms.get(this.current);
    if (!joined || joined.unread.count === 0 || !this.log.atEnd) return;
    joined.unread.read();
    this.renderRooms();
    this.updateBadge();
  }

  private updateBadge(): void {
    const unread = this.unread;
    this.title.dataset = unread ? { unread: String(unread) } : {};
    this.title.className = unread ? "iav-lab-tab iav-lab-has-unread" : "iav-lab-tab";
    this.title.caption = unread ? `iAvicenne: ${unread} unread` : "iAvicenne: rooms, people and chat";
  }

  private async sendInput(): Promise<void> {
    const text = this.input.value.trim();
    if (!text || !this.current) return;
    const to = this.toSelect.value || null;
    this.input.value = "";
    this.hideCompletion();
    try {
      await this.collaboration.send(this.current, text, to);
    } catch (error) {
      this.input.value = text;
      this.log.note(`not sent: ${(error as Error).message}`, "iav-lab-error");
    }
  }

  // -- @mentions ------------------------------------------------------------------------

  private memberNames(): string[] {
    const joined = this.current ? this.collaboration.rooms.get(this.current) : undefined;
    if (!joined) return [];
    return [...joined.room.members.keys()].filter((name) => name !== this.collaboration.me);
  }

  private updateCompletion(): void {
    const query = mentionQuery(this.input.value, this.input.selectionStart ?? this.input.value.length);
    const names = query ? completions(query.query, this.memberNames()) : [];
    if (!names.length) {
      this.hideCompletion();
      return;
    }
    this.completionItems = names;
    this.completionIndex = Math.min(this.completionIndex, names.length - 1);
    this.completion.replaceChildren(
      ...names.map((name, index) => {
        const item = element("li", index === this.completionIndex ? "iav-lab-completion-item iav-lab-selected" : "iav-lab-completion-item", `@${safeName(name)}`);
        item.addEventListener("mousedown", (event) => {
          event.preventDefault();
          this.choose(name);
        });
        return item;
      }),
    );
    this.completion.hidden = false;
  }

  private hideCompletion(): void {
    this.completion.hidden = true;
    this.completionItems = [];
    this.completionIndex = 0;
  }

  private choose(name: string): void {
    const done = completeMention(this.input.value, this.input.selectionStart ?? this.input.value.length, name);
    this.input.value = done.value;
    this.input.setSelectionRange(done.caret, done.caret);
    this.hideCompletion();
    this.input.focus();
  }

  private onKeyDown(event: KeyboardEvent): void {
    if (!this.completion.hidden && this.completionItems.length) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        this.completionIndex = (this.completionIndex + step + this.completionItems.length) % this.completionItems.length;
        this.updateCompletion();
        return;
      }
      if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        this.choose(this.completionItems[this.completionIndex]);
        return;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        this.hideCompletion();
        return;
      }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      // JupyterLab's shortcuts (Enter in a notebook) must not see it
      event.stopPropagation();
      void this.sendInput();
    }
  }
}
