/**
 * The chat of the room the panel shows: a bounded window of rendered messages, so a flood
 * (1,500 messages in 15 s) never holds the page's main thread.
 *
 * - At most `WINDOW` messages are in the DOM while the reader follows the end; older ones
 *   come back `PAGE` at a time when they scroll to the top (at most `MAX_RENDERED` then).
 * - Messages that arrive are rendered once per animation frame, together (one layout, one
 *   scroll), never one by one; a reader scrolled up is not moved, and gets "New messages ↓".
 * - Markdown is rendered after the text is shown, newest first, within `MARKDOWN_BUDGET_MS`
 *   of each frame; a message scrolled out of the window before its turn is never rendered.
 *
 * Every string from another person goes in as text (`textContent`); a message's Markdown
 * only through JupyterLab's Markdown renderer with an untrusted model (its sanitizer, then
 * `InertSanitizer`: nothing is fetched when a message is shown).
 */

import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";

import type { ChatEntry, JoinedRoom } from "./collaboration";
import { hardenLinks } from "./inert";
import { dayLabel, isPlain, startsDay, timeLabel } from "./model";
import { type Person, personText } from "./names";

/** Messages in the DOM while the reader follows the end of the chat. */
export const WINDOW = 150;
/** Older messages added at once when the reader scrolls to the top. */
export const PAGE = 50;
/** Messages in the DOM at most (the newest go when the reader scrolls far up). */
export const MAX_RENDERED = 3 * WINDOW;
/** The main thread's time given to Markdown per frame (ms). */
const MARKDOWN_BUDGET_MS = 8;
/** At most one drawing of new messages this often (ms): each costs a layout and a paint of
 * the panel, so a flood is drawn ten times a second, not sixty, a few messages each time. */
const MIN_FLUSH_INTERVAL_MS = 100;

/** How close to the end (px) counts as at the end. */
const AT_END_PX = 24;

function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** What the chat needs of the panel around it. */
export interface ChatHost {
  /** Who `userId` is in `joined` (names.ts). */
  personIn(joined: JoinedRoom, userId: string): Person;
  /** A person as a header shows them (`@username`, then their chosen name). */
  personNodes(person: Person, className: string): HTMLElement[];
  /** The reader saw the end of the chat. */
  read(): void;
}

export class ChatLog {
  readonly node = element("div", "iav-lab-log");
  readonly jumpButton = element("button", "iav-lab-jump", "New messages ↓");
  private joined: JoinedRoom | null = null;
  /** The positions (`JoinedRoom.dropped` + index) of the messages rendered: [start, end). */
  private start = 0;
  private end = 0;
  /** New messages are appended (the reader is at the end, or was when they came). */
  private following = true;
  /** Whether the end of the chat was in view at the last frame or scroll (read once, not per message). */
  private atEndNow = true;
  private frame: number | null = null;
  private waiting: ReturnType<typeof setTimeout> | null = null;
  private flushedAt = -Infinity;
  private renderingMarkdown = false;
  private readonly markdown: { host: HTMLElement; text: string }[] = [];

  constructor(
    private readonly host: ChatHost,
    private readonly rendermime: IRenderMimeRegistry,
  ) {
    this.node.addEventListener("scroll", () => this.onScroll());
    // a link in a message opens only on a click, in a new tab without opener or referrer,
    // whatever JupyterLab's renderer (or its typesetter, later) set on the anchor
    this.node.addEventListener("click", (event) => {
      const anchor = (event.target as Element | null)?.closest?.("a[href]") as HTMLAnchorElement | null;
      if (!anchor || !this.node.contains(anchor)) return;
      event.preventDefault();
      event.stopPropagation();
      window.open(anchor.href, "_blank", "noopener,noreferrer");
    });
    this.jumpButton.hidden = true;
    this.jumpButton.addEventListener("click", () => this.toEnd());
  }

  /** Whether the reader sees the end of the chat (as of the last frame or scroll). */
  get atEnd(): boolean {
    return this.atEndNow;
  }

  /** The messages rendered now (for tests and benchmarks: bounded by MAX_RENDERED). */
  get rendered(): number {
    return this.end - this.start;
  }

  /** Show `joined` (or nothing): its newest WINDOW messages, scrolled to the end. */
  show(joined: JoinedRoom | null): void {
    this.joined = joined;
    this.markdown.length = 0;
    this.node.replaceChildren();
    const total = joined ? joined.dropped + joined.entries.length : 0;
    this.start = this.end = Math.max(joined?.dropped ?? 0, total - WINDOW);
    this.following = true;
    this.append(total);
    this.toEnd();
  }

  /** A message came to `joined` (ours: `mine`): rendered with the others of this frame. */
  arrived(joined: JoinedRoom, mine: boolean): void {
    if (joined !== this.joined) return;
    if (mine && !this.following) {
      this.show(joined); // what we write, we see
      return;
    }
    this.schedule();
  }

  /** Scroll to the newest message (catching up if the window stopped following). */
  toEnd(): void {
    const joined = this.joined;
    if (joined && !this.following) {
      const total = joined.dropped + joined.entries.length;
      if (total - this.end > WINDOW) {
        this.show(joined);
        return;
      }
      this.following = true;
      this.append(total);
      this.trimTop();
    }
    this.node.scrollTop = this.node.scrollHeight;
    this.atEndNow = true;
    this.jumpButton.hidden = true;
    this.host.read();
  }

  /** Add a line that is not a message (a send that failed): it goes with the window. */
  note(text: string, className: string): void {
    this.node.append(element("div", className, text));
  }

  private schedule(): void {
    if (this.frame !== null || this.waiting !== null) return;
    const wait = this.flushedAt + MIN_FLUSH_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      this.frame = requestAnimationFrame(() => this.flush());
      return;
    }
    this.waiting = setTimeout(() => {
      this.waiting = null;
      this.frame = requestAnimationFrame(() => this.flush());
    }, wait);
  }

  /** Once per frame: the messages that came, then Markdown within its budget. */
  private flush(): void {
    this.frame = null;
    this.flushedAt = performance.now();
    const joined = this.joined;
    if (!joined) return;
    const total = joined.dropped + joined.entries.length;
    if (this.end < total) {
      if (this.following && this.atEndNow) {
        if (total - this.end > WINDOW) {
          this.show(joined); // more came than the window holds: its newest only
          return;
        }
        this.append(total);
        this.trimTop();
        this.node.scrollTop = this.node.scrollHeight;
      } else {
        this.following = false; // the reader is reading: nothing moves under their eyes
        this.jumpButton.hidden = false;
      }
    }
    void this.renderMarkdown();
  }

  /** Render the messages from `end` to `until` after the others (one DOM write). */
  private append(until: number): void {
    const joined = this.joined;
    if (!joined || until <= this.end) return;
    const fragment = document.createDocumentFragment();
    for (let position = this.end; position < until; position++) fragment.append(this.entryNode(joined, position));
    this.node.append(fragment);
    this.end = until;
    this.schedule(); // their Markdown
  }

  /** Drop the oldest rendered messages beyond WINDOW (the reader is at the end). */
  private trimTop(): void {
    while (this.end - this.start > WINDOW && this.node.firstElementChild) {
      const first = this.node.firstElementChild as HTMLElement;
      if (first.dataset.position !== undefined) this.start = Number(first.dataset.position) + 1;
      first.remove();
    }
  }

  private onScroll(): void {
    const log = this.node;
    this.atEndNow = log.scrollHeight - log.scrollTop - log.clientHeight < AT_END_PX;
    if (this.atEndNow) {
      if (!this.following) this.toEnd();
      else {
        this.jumpButton.hidden = true;
        this.host.read();
      }
      return;
    }
    if (log.scrollTop < AT_END_PX) this.older();
  }

  /** The reader reached the top: PAGE older messages above, where they were. */
  private older(): void {
    const joined = this.joined;
    if (!joined) return;
    const from = Math.max(joined.dropped, this.start - PAGE);
    if (from >= this.start) return;
    const fragment = document.createDocumentFragment();
    for (let position = from; position < this.start; position++) fragment.append(this.entryNode(joined, position));
    const log = this.node;
    const height = log.scrollHeight;
    log.insertBefore(fragment, log.firstChild);
    this.start = from;
    log.scrollTop += log.scrollHeight - height; // what the reader looked at stays in place
    // far up: the newest go (they come back on the way down, or with "New messages ↓")
    while (this.end - this.start > MAX_RENDERED && log.lastElementChild) {
      const last = log.lastElementChild as HTMLElement;
      if (last.dataset.position !== undefined) this.end = Number(last.dataset.position);
      last.remove();
      this.following = false;
    }
    if (!this.following) this.jumpButton.hidden = false;
    this.schedule();
  }

  /** One message (with its day heading and the unread marker before it, when they apply). */
  private entryNode(joined: JoinedRoom, position: number): HTMLElement {
    const entry = joined.entries[position - joined.dropped] as ChatEntry;
    const previous = position > joined.dropped ? joined.entries[position - joined.dropped - 1] : undefined;
    const wrapper = element("div", "iav-lab-entry");
    wrapper.dataset.position = String(position);
    if (startsDay(previous?.timestamp ?? null, entry.timestamp)) {
      wrapper.append(element("div", "iav-lab-day", dayLabel(entry.timestamp)));
    }
    if (joined.unread.marker === position && !entry.mine) {
      this.node.querySelector(".iav-lab-unread-marker")?.remove();
      wrapper.append(element("div", "iav-lab-unread-marker", "New"));
    }
    const line = element("div", "iav-lab-message");
    if (entry.mine) line.classList.add("iav-lab-mine");
    if (entry.direct) line.classList.add("iav-lab-direct");
    if (entry.mentionsMe) line.classList.add("iav-lab-mention");
    line.dataset.username = entry.username;
    const head = element("div", "iav-lab-message-head");
    head.append(...this.host.personNodes(this.host.personIn(joined, entry.userId), "iav-lab-sender"));
    if (entry.direct) {
      const to = entry.mine ? `to ${personText(this.host.personIn(joined, entry.to ?? ""))}` : "to you";
      head.append(element("span", "iav-lab-direct-label", `direct, ${to}`));
    }
    const time = element("time", "iav-lab-time", timeLabel(entry.timestamp));
    time.dateTime = entry.timestamp;
    time.title = new Date(entry.timestamp).toLocaleString();
    head.append(time);
    const body = element("div", "iav-lab-body", entry.text); // text until its Markdown is rendered
    line.append(head, body);
    wrapper.append(line);
    if (!isPlain(entry.text)) this.markdown.push({ host: body, text: entry.text });
    return wrapper;
  }

  /** Markdown of the messages rendered, newest first, within this frame's budget. Each
   * render is awaited before the next starts, so the budget bounds the work of the whole task. */
  private async renderMarkdown(): Promise<void> {
    if (this.renderingMarkdown) return;
    this.renderingMarkdown = true;
    const deadline = performance.now() + MARKDOWN_BUDGET_MS;
    let rendered = 0;
    try {
      while (this.markdown.length && performance.now() < deadline) {
        const job = this.markdown.pop() as { host: HTMLElement; text: string };
        if (!job.host.isConnected) continue; // scrolled out of the window before its turn
        await this.markdownOf(job.host, job.text);
        rendered += 1;
      }
    } finally {
      this.renderingMarkdown = false;
    }
    // at most what the window renders waits: the jobs of removed nodes are dropped
    if (this.markdown.length > MAX_RENDERED) this.markdown.splice(0, this.markdown.length - MAX_RENDERED);
    if (this.markdown.length) this.schedule();
    // once per batch, not once per message
    if (rendered && this.following && this.atEndNow) this.node.scrollTop = this.node.scrollHeight;
  }

  /** The message's Markdown, through JupyterLab's renderer (untrusted: its sanitizer applies). */
  private async markdownOf(host: HTMLElement, text: string): Promise<void> {
    try {
      const renderer = this.rendermime.createRenderer("text/markdown");
      const model = this.rendermime.createModel({ data: { "text/markdown": text }, trusted: false });
      await renderer.renderModel(model);
      hardenLinks(renderer.node);
      if (host.isConnected) host.replaceChildren(renderer.node);
    } catch {
      host.textContent = text;
    }
  }
}
