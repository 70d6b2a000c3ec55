// Stand-ins for what the browser module touches outside itself: WebSocket, timers,
// RTCPeerConnection. The tests play the server's side by hand, frame by frame.

export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Timers that run only when the test advances the clock. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (callback, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + ms, callback });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Delays of the timers waiting now. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now);
  }

  /** Move time on by `ms`, running every timer due on the way, in order. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at);
      if (!due.length) break;
      const [id, timer] = due[0];
      this.timers.delete(id);
      this.now = timer.at;
      timer.callback();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

/** Every socket the client opened; `FakeNetwork.WebSocket` is the constructor to inject. */
export class FakeNetwork {
  constructor() {
    this.sockets = [];
    const network = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        this.closedWith = null;
        network.sockets.push(this);
      }

      send(data) {
        if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
        this.sent.push(JSON.parse(data));
      }

      close(code = 1005, reason = "") {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        this.closedWith = { code, reason };
        queueMicrotask(() => this.onclose?.({ code, reason }));
      }

      // -- the server's side ----------------------------------------------------------
      accept() {
        this.readyState = 1;
        this.onopen?.({});
      }

      refuse() {
        this.readyState = 3;
        this.onclose?.({ code: 1006, reason: "" });
      }

      receive(frame) {
        this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
      }

      drop(code = 1006, reason = "") {
        this.readyState = 3;
        this.onclose?.({ code, reason });
      }

      /** The frames the client sent of `type` (all of them without one). */
      frames(type) {
        return type ? this.sent.filter((f) => f.type === type) : this.sent;
      }

      last(type) {
        const frames = this.frames(type);
        if (!frames.length) throw new Error(`no ${type} frame sent; sent: ${JSON.stringify(this.sent)}`);
        return frames[frames.length - 1];
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }
}

/** What a room server answers to `join-room`. */
export function roomJoined(request, { members = [], seq = 0, epoch = "e1", recovered, userId = "alice" } = {}) {
  const frame = { type: "room-joined", room: request.room, user_id: userId, members, seq, epoch, ref: request.ref };
  if (request.payload?.since !== undefined) {
    frame.since = request.payload.since;
    frame.recovered = recovered ?? true;
  }
  return frame;
}

export function message(room, seq, text, extra = {}) {
  return { type: "message", room, seq, user_id: "bob", message: { content: text }, identity: { username: "bob" }, ...extra };
}

export const OPTIONS = { url: "http://127.0.0.1:8888/", token: "secret" };
