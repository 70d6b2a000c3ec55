/**
 * The side panel: the rooms one may join (with member counts), and for the room chosen its
 * members (status, where they are, their connections) and its chat.
 *
 * Every string from another person goes in as text (`textContent`); a chat message's
 * Markdown only through JupyterLab's Markdown renderer with an untrusted model, which
 * passes it through JupyterLab's sanitizer, then `InertSanitizer` (nothing is fetched
 * when a message is shown: an image is a link). A person is named by their verified
 * `@username` first (names.ts), and every name and file name through `safeName`.
 */

import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { Widget } from "@lumino/widgets";

import type { ChatEntry, Collaboration, JoinedRoom } from "./collaboration";
import { InertSanitizer, hardenLinks } from "./inert";
import { completeMention, completions, connectionLabel, dayLabel, mentionQuery, peopleOf, startsDay, timeLabel } from "./model";
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
  private readonly log = element("div", "iav-lab-log");
  private readonly jumpButton = element("button", "iav-lab-jump", "New messages ↓");
  private readonly toSelect = element("select", "iav-lab-to");
  private readonly input = element("textarea", "iav-lab-input");
  private readonly completion = element("ul", "iav-lab-completion");
  private readonly roomTitle = element("h3", "iav-lab-room-title");
  private readonly transfersSection = element("section", "iav-lab-section iav-lab-transfers");
  private readonly transfersList = element("ul", "iav-lab-transfer-list");
  private completionItems: string[] = [];
  private completionIndex = 0;
  private rendered = new Map<string, number>();
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
    this.build();
    collaboration.changed.connect(() => this.render(), this);
    collaboration.arrived.connect((_, { room, entry, index }) => this.onArrived(room, entry, index), this);
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

    this.log.addEventListener("scroll", () => this.onScroll());
    // a link in a message opens only on a click, in a new tab without opener or referrer,
    // whatever JupyterLab's renderer (or its typesetter, later) set on the anchor
    this.log.addEventListener("click", (event) => {
      const anchor = (event.target as Element | null)?.closest?.("a[href]") as HTMLAnchorElement | null;
      if (!anchor || !this.log.contains(anchor)) return;
      event.preventDefault();
      event.stopPropagation();
      window.open(anchor.href, "_blank", "noopener,noreferrer");
    });
    this.jumpButton.hidden = true;
    this.jumpButton.addEventListener("click", () => this.scrollToEnd());
    const compose = element("div", "iav-lab-compose");
    this.input.rows = 2;
    this.input.placeholder = "Message (Enter to send, Shift+Enter for a new line, @ to mention)";
    this.input.setAttribute("aria-label", "message");
    this.toSelect.setAttribute("aria-label", "send to");
    this.completion.hidden = true;
    this.input.addEventListener("keydown", (event) => this.onKeyDown(event));
    this.input.addEventListener("input", () => this.updateCompletion());
    compose.append(this.toSelect, this.completion, this.input);
    this.chat.append(this.log, this.jumpButton, compose);
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
      this.rendered.clear();
      this.log.replaceChildren();
      const joined = this.collaboration.rooms.get(name);
      if (joined) {
        for (const [index, entry] of joined.entries.entries()) this.renderEntry(joined, entry, index);
        this.scrollToEnd();
      }
    }
    this.render();
  }

  protected onUpdateRequest(): void {
    this.render();
  }

  protected onAfterShow(): void {
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

  private atEnd(): boolean {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 24;
  }

  private seen(): boolean {
    return this.isVisible && document.visibilityState !== "hidden" && this.atEnd();
  }

  private onArrived(joined: JoinedRoom, entry: ChatEntry, index: number): void {
    const showing = joined.name === this.current;
    const seen = showing && (entry.mine || this.seen());
    if (entry.mine) joined.unread.clear();
    else joined.unread.arrived(index, seen, entry.mentionsMe);
    if (showing) {
      const wasAtEnd = this.atEnd();
      this.renderEntry(joined, entry, index);
      if (wasAtEnd || entry.mine) this.scrollToEnd();
      else this.jumpButton.hidden = false;
    }
    this.renderRooms();
    this.updateBadge();
  }

  private renderEntry(joined: JoinedRoom, entry: ChatEntry, index: number): void {
    const previous = index > 0 ? joined.entries[index - 1] : undefined;
    if (startsDay(previous?.timestamp ?? null, entry.timestamp)) {
      this.log.append(element("div", "iav-lab-day", dayLabel(entry.timestamp)));
    }
    if (joined.unread.marker === index && !entry.mine) {
      this.log.querySelector(".iav-lab-unread-marker")?.remove();
      this.log.append(element("div", "iav-lab-unread-marker", "New"));
    }
    const line = element("div", "iav-lab-message");
    if (entry.mine) line.classList.add("iav-lab-mine");
    if (entry.direct) line.classList.add("iav-lab-direct");
    if (entry.mentionsMe) line.classList.add("iav-lab-mention");
    const head = element("div", "iav-lab-message-head");
    head.append(...personNodes(this.personIn(joined, entry.userId), "iav-lab-sender"));
    if (entry.direct) {
      const to = entry.mine ? `to ${personText(this.personIn(joined, entry.to ?? ""))}` : "to you";
      head.append(element("span", "iav-lab-direct-label", `direct, ${to}`));
    }
    const time = element("time", "iav-lab-time", timeLabel(entry.timestamp));
    time.dateTime = entry.timestamp;
    time.title = new Date(entry.timestamp).toLocaleString();
    head.append(time);
    const body = element("div", "iav-lab-body");
    line.append(head, body);
    this.log.append(line);
    void this.renderMarkdown(body, entry.text);
  }

  /** The message's Markdown, through JupyterLab's renderer (untrusted: its sanitizer applies). */
  private async renderMarkdown(host: HTMLElement, text: string): Promise<void> {
    host.textContent = text; // until rendered, and if rendering fails
    try {
      const renderer = this.chatRendermime.createRenderer("text/markdown");
      const model = this.chatRendermime.createModel({ data: { "text/markdown": text }, trusted: false });
      await renderer.renderModel(model);
      hardenLinks(renderer.node);
      host.replaceChildren(renderer.node);
      if (this.atEnd()) this.scrollToEnd();
    } catch {
      host.textContent = text;
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

  private scrollToEnd(): void {
    this.log.scrollTop = this.log.scrollHeight;
    this.jumpButton.hidden = true;
    this.markRead();
  }

  private onScroll(): void {
    if (this.atEnd()) {
      this.jumpButton.hidden = true;
      this.markRead();
    }
  }

  private markRead(): void {
    if (!this.current || !this.isVisible || document.visibilityState === "hidden") return;
    const joined = this.collaboration.rooms.get(this.current);
    if (!joined || joined.unread.count === 0 || !this.atEnd()) return;
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
      this.log.append(element("div", "iav-lab-error", `not sent: ${(error as Error).message}`));
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
