// A stand-in for socket.io-client's socket, for the tests that need no
// server: it records what the SDK emits and lets a test play the server's
// side (connect, events, acks, cuts) synchronously and in any order.

export class FakeSocket {
  constructor() {
    this.handlers = new Map();
    /** Every emit, as [name, payload]. */
    this.sent = [];
    /** Unanswered `emitWithAck` calls: { name, payload, resolve, reject }. */
    this.pendingAcks = [];
    this.connected = false;
    this.active = true;
    this.reconnectCalls = 0;
    this.io = { engine: { close: () => this.cut("transport close") } };
  }

  on(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, []);
    this.handlers.get(name).push(fn);
    return this;
  }

  emit(name, payload) {
    this.sent.push([name, payload]);
    return this;
  }

  emitWithAck(name, payload) {
    this.sent.push([name, payload]);
    return new Promise((resolve, reject) => this.pendingAcks.push({ name, payload, resolve, reject }));
  }

  connect() {
    this.reconnectCalls++;
    return this;
  }

  disconnect() {
    this.connected = false;
    return this;
  }

  // -- the server's side ----------------------------------------------------

  fire(name, payload) {
    for (const fn of this.handlers.get(name) ?? []) fn(payload);
  }

  /** A connection comes up and the server says hello. */
  up(clientId, extra = {}) {
    this.connected = true;
    this.fire("connect");
    this.fire("ai:connected", {
      clientId,
      resumeToken: `rt-${clientId}`,
      maxConcurrentStreams: 10,
      backpressureThreshold: 100,
      backpressurePolicy: "coalesce",
      ackWindow: 256,
      heartbeatIntervalMs: 0,
      reconnectWindowMs: 30000,
      serverVersion: "test",
      timestamp: 0,
      ...extra,
    });
  }

  /** The transport dies: unanswered acks fail, as socket.io-client's do. */
  cut(reason = "transport close") {
    this.connected = false;
    for (const p of this.pendingAcks.splice(0)) p.reject(new Error("socket has been disconnected"));
    this.fire("disconnect", reason);
  }

  /** Answer the oldest unanswered `ai:stream`. */
  answer(ack) {
    const p = this.pendingAcks.shift();
    if (!p) throw new Error("no ai:stream waits for an answer");
    p.resolve(typeof ack === "function" ? ack(p.payload) : ack);
    return p.payload;
  }

  /** Emits of one name, in order, and forget them. */
  take(name) {
    const mine = this.sent.filter(([n]) => n === name).map(([, p]) => p);
    this.sent = this.sent.filter(([n]) => n !== name);
    return mine;
  }
}

/** Let promise callbacks (acks, iterator steps) run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));
