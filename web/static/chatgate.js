// chatgate.js — the browser client of chatgate's protocol v1 (docs/protocol.md),
// the twin of the Go package client/: log in, negotiate, connect over the best
// transport that works (WebSocket → SSE → long polling → polling, in the order
// /v1/negotiate gives), fall back when one is refused or fails before
// delivering, reconnect with backoff, and hand every durable event to the
// caller exactly once, in seq order, resuming from a cursor that is kept in
// localStorage per user and device (so a reload resumes where it stopped).
//
//   const client = new Client();
//   await client.login('alice', 'correct horse');
//   const conn = client.connect({onEvent: (e) => ..., onState: (s) => ...});
//   const msg = await conn.send({to: bobID, content: 'hi'});
//
// Plain ES module, no dependencies.

export const TRANSPORTS = ['websocket', 'sse', 'longpolling', 'polling'];

const SESSION_KEY = 'chatgate.session';
const STABLE_AFTER = 10000; // a stream up this long counts as working even if idle
const MAX_GAP_RETRIES = 3;

/** An error answer of the API: {"error":{"code","message"}} with its status. */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.name = 'APIError';
    this.status = status;
    this.code = code || '';
  }
  /** Whether repeating the request may succeed (5xx, 408, 429). */
  get temporary() {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** A transport the server (or a proxy) does not carry: fall back at once. */
class RefusedError extends Error {
  constructor(message) {
    super(`transport refused: ${message}`);
    this.name = 'RefusedError';
  }
}

class GapError extends Error {
  constructor() {
    super('seq gap on the stream; resuming from the cursor');
    this.name = 'GapError';
  }
}

/** The connection went away before the server answered a send: retried. */
class ClosedError extends Error {
  constructor(message = 'connection closed before the server answered') {
    super(message);
    this.name = 'ClosedError';
  }
}

/** A random idempotency key (UUID v4); works on plain http origins too. */
export function newClientMsgID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Compares two decimal id strings as 64-bit integers (-1, 0, 1). */
export function compareIDs(a, b) {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The delay before retry n (from 0): doubling from lo, capped at hi, with equal jitter. */
function backoff(lo, hi, n) {
  const d = Math.min(hi, lo * 2 ** Math.min(n, 30));
  return d / 2 + Math.random() * (d / 2);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, {once: true});
  });
}

function retryable(err) {
  if (err instanceof APIError) return err.temporary;
  return err?.name !== 'AbortError'; // network errors, timeouts, dropped sockets
}

/**
 * Client is one device of one user: its token and the HTTP API. The session
 * (token, user, device) is kept in storage so that a reload stays logged in.
 */
export class Client {
  constructor({base = location.origin, storage = globalThis.localStorage, requestTimeout = 30000} = {}) {
    this.base = base.replace(/\/+$/, '');
    this.storage = storage;
    this.requestTimeout = requestTimeout;
    this.lastActivity = 0;
    this.session = null;
    try {
      this.session = JSON.parse(storage?.getItem(SESSION_KEY) || 'null');
    } catch {
      this.session = null;
    }
  }

  get token() { return this.session?.token || ''; }
  get user() { return this.session?.user || null; }
  get deviceID() { return this.session?.device_id || ''; }

  async signup({username, password, display_name, device}) {
    const a = await this.api('POST', '/v1/auth/signup', {username, password, display_name: display_name || undefined, device: device || undefined}, {auth: false});
    this.setSession(a);
    return a;
  }

  async login(username, password, device) {
    const a = await this.api('POST', '/v1/auth/login', {username, password, device: device || undefined}, {auth: false});
    this.setSession(a);
    return a;
  }

  /** Revokes this device's token (friends see the user offline at once) and forgets it. */
  async logout() {
    try {
      await this.api('POST', '/v1/auth/logout');
    } finally {
      this.storage?.removeItem(this.cursorKey()); // the device is gone for good
      this.forget();
    }
  }

  setSession(a) {
    this.session = {token: a.token, user: a.user, device_id: a.device_id};
    this.storage?.setItem(SESSION_KEY, JSON.stringify(this.session));
    // A new device starts at the inbox head the server gave (0 at signup):
    // older messages come from the history endpoints.
    if (this.loadCursor() === null) this.saveCursor(a.cursor || 0);
  }

  forget() {
    this.session = null;
    this.storage?.removeItem(SESSION_KEY);
  }

  updateUser(u) {
    if (!this.session) return;
    this.session.user = u;
    this.storage?.setItem(SESSION_KEY, JSON.stringify(this.session));
  }

  cursorKey() {
    return `chatgate.cursor.${this.user?.id}.${this.deviceID}`;
  }

  /** The cursor saved for this user and device, or null. */
  loadCursor() {
    const v = this.storage?.getItem(this.cursorKey());
    const n = v === null || v === undefined ? NaN : Number(v);
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  }

  saveCursor(n) {
    this.storage?.setItem(this.cursorKey(), String(n));
  }

  /**
   * Calls one endpoint: body is sent as JSON, a 2xx answer is decoded (null
   * for 204), anything else throws APIError. Options: auth (default true),
   * base (another server), signal, timeout (ms; 0 for none), keepalive
   * (outlives the page, for a last request on pagehide).
   */
  async api(method, path, body, {auth = true, base = this.base, signal, timeout = this.requestTimeout, keepalive = false} = {}) {
    const headers = {Accept: 'application/json'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) {
      if (!this.token) throw new APIError(401, 'unauthorized', 'not logged in');
      headers.Authorization = `Bearer ${this.token}`;
      this.lastActivity = Date.now();
    }
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(signal.reason);
    signal?.addEventListener('abort', onAbort, {once: true});
    const t = timeout > 0 ? setTimeout(() => ctl.abort(new DOMException('request timed out', 'TimeoutError')), timeout) : 0;
    try {
      const resp = await fetch(base + path, {
        method, headers, signal: ctl.signal, cache: 'no-store', keepalive,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await resp.text();
      if (!resp.ok) {
        let code = '', message = text.slice(0, 200);
        try {
          const e = JSON.parse(text).error;
          if (e) ({code, message} = e);
        } catch { /* not the protocol's error object (a proxy page) */ }
        throw new APIError(resp.status, code, message);
      }
      return text ? JSON.parse(text) : null;
    } finally {
      clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * GET /v1/negotiate: where to connect and how to behave. opts.zone names
   * the client's zone (a cluster recommends a node in it first).
   */
  negotiate(opts = {}) {
    const {zone, ...rest} = opts;
    const path = zone ? `/v1/negotiate?zone=${encodeURIComponent(zone)}` : '/v1/negotiate';
    return this.api('GET', path, undefined, {auth: false, ...rest});
  }

  /** Opens the realtime connection; see Conn. */
  connect(opts = {}) {
    if (!this.token) throw new APIError(401, 'unauthorized', 'not logged in');
    return new Conn(this, opts);
  }
}

/**
 * Conn is the realtime connection of a Client. It runs until close() (or
 * until the server refuses the token: onState gets {fatal: err}).
 *
 * Options: transport (force one), transports (the order to try), onEvent
 * (every event: durable ones exactly once in seq order), onState
 * ({transport, connected, error?, fatal?}), onError, pollInterval (ms, 2000),
 * longPollWait (s, 25), connectTimeout (ms, 10000), fallbackAfter (3),
 * minBackoff/maxBackoff (ms, 250/5000), zone (sent to negotiate: a cluster
 * recommends a node of this zone first).
 */
export class Conn {
  constructor(client, opts) {
    this.client = client;
    this.opts = {
      pollInterval: 2000, longPollWait: 25, connectTimeout: 10000, fallbackAfter: 3,
      minBackoff: 250, maxBackoff: 5000, sendTimeout: 60000, ...opts,
    };
    if (this.opts.transport && !TRANSPORTS.includes(this.opts.transport)) {
      throw new Error(`unknown transport ${JSON.stringify(this.opts.transport)}`);
    }
    this.server = client.base;
    this.heartbeatMs = 5000;
    this.cursor = client.loadCursor() ?? 0;
    this.startCursor = this.cursor;
    this.delivered = []; // seqs handed to onEvent (the last 1000), for tests and debugging
    this.heartbeats = 0; // heartbeats sent
    this.transport = '';
    this.connected = false;
    this.ws = null; // the open WebSocket while a websocket session is up
    this.wsWaiting = new Map(); // client_msg_id → [{resolve, reject}]
    this.abort = new AbortController(); // ends everything at close()
    this.kick = null; // wakes short polling after a send
    this.gap = {cursor: -1, seq: -1, count: 0};
    this.hbTimer = 0;
    this.scheduleHeartbeat();
    this.done = this.run().catch((e) => this.report(e));
  }

  /** Stops the connection; no event is handed over after it. */
  close() {
    if (this.abort.signal.aborted) return;
    this.abort.abort();
    clearTimeout(this.hbTimer);
    this.endSession?.();
    this.setState(false);
  }

  get closed() { return this.abort.signal.aborted; }

  report(err) {
    if (this.closed) return;
    this.opts.onError?.(err);
  }

  setState(connected, extra = {}) {
    this.connected = connected;
    this.opts.onState?.({transport: this.transport, connected, ...extra});
  }

  applyNegotiation(n) {
    if (n?.server) this.server = n.server.replace(/\/+$/, '');
    if (n?.heartbeat_interval_ms > 0 && n.heartbeat_interval_ms !== this.heartbeatMs) {
      this.heartbeatMs = n.heartbeat_interval_ms;
      if (!this.closed) this.scheduleHeartbeat();
    }
  }

  async negotiate() {
    try {
      const n = await this.client.negotiate({signal: this.abort.signal, timeout: this.opts.connectTimeout, zone: this.opts.zone});
      this.applyNegotiation(n);
      return n;
    } catch (e) {
      this.report(e);
      return null;
    }
  }

  async run() {
    const n = await this.negotiate();
    let order = this.opts.transport ? [this.opts.transport] : this.opts.transports;
    if (!order?.length) order = (n?.transports || []).filter((t, i, a) => TRANSPORTS.includes(t) && a.indexOf(t) === i);
    if (!order.length) order = TRANSPORTS;
    this.order = order;

    let everUp = false, allRefused = true, sweeps = 0;
    let idx = 0, failures = 0, attempt = 0;
    while (!this.closed) {
      const s = {name: order[idx], up: false, upAt: 0, progress: false};
      this.transport = s.name;
      this.opts.onState?.({transport: s.name, connected: false, connecting: true});
      let err;
      try {
        err = await this.session(s);
      } catch (e) {
        err = e;
      }
      if (this.closed) return;
      if (s.up) {
        everUp = true;
        if (Date.now() - s.upAt >= STABLE_AFTER) s.progress = true;
        this.setState(false, {error: err});
      }
      if (!(err instanceof APIError) && !(err instanceof GapError) && !s.progress) {
        // WebSocket and EventSource hide the HTTP status: ask the API
        // whether the token still works, and whether the server answers
        // at all (if it does, a transport that never came up is refused).
        const why = await this.probe();
        if (why instanceof APIError) err = why;
        else if (why === 'ok' && !s.up && !(err instanceof RefusedError)) err = new RefusedError(err?.message || 'failed before it was up');
      }
      if (err instanceof APIError && err.status === 401) {
        this.fatal = err;
        this.setState(false, {fatal: err});
        clearTimeout(this.hbTimer);
        this.abort.abort();
        return;
      }
      this.report(new Error(`${s.name}: ${err?.message || err}`));
      if (!everUp) {
        // Nothing has worked yet: move straight on to the next transport;
        // after a whole sweep, wait and sweep again (a page never gives up).
        allRefused &&= err instanceof RefusedError;
        if (++idx < order.length) continue;
        idx = 0;
        sweeps++;
        const wait = allRefused ? this.opts.maxBackoff : backoff(this.opts.minBackoff, this.opts.maxBackoff, sweeps - 1);
        allRefused = true;
        if (!(await sleep(wait, this.abort.signal))) return;
        continue;
      }
      if (err instanceof GapError) continue; // not a failure: resume at once
      if (s.progress) failures = attempt = 0;
      else if (err instanceof RefusedError) failures = this.opts.fallbackAfter;
      else failures++;
      if (failures >= this.opts.fallbackAfter && order.length > 1) {
        idx = (idx + 1) % order.length;
        failures = 0;
      }
      await this.negotiate(); // in a cluster the old server may be gone
      if (!(await sleep(backoff(this.opts.minBackoff, this.opts.maxBackoff, attempt++), this.abort.signal))) return;
    }
  }

  /** 'ok' when the server answers with the token accepted, an APIError when it refuses, else 'down'. */
  async probe() {
    try {
      await this.client.api('POST', '/v1/heartbeat', undefined, {base: this.server, signal: this.abort.signal, timeout: this.opts.connectTimeout});
      return 'ok';
    } catch (e) {
      return e instanceof APIError && !e.temporary ? e : 'down';
    }
  }

  session(s) {
    switch (s.name) {
      case 'websocket': return this.wsSession(s);
      case 'sse': return this.sseSession(s);
      case 'longpolling': return this.pollSession(s, true);
      default: return this.pollSession(s, false);
    }
  }

  markUp(s) {
    if (s.up) return;
    s.up = true;
    s.upAt = Date.now();
    this.setState(true);
  }

  /**
   * Handles one event (JSON text, or an object from a poll page), keeping the exactly-once,
   * in-order promise for durable events: a seq at or below the cursor was
   * handled already and is dropped; a seq beyond cursor+1 means something
   * was skipped, so the session ends (GapError) and resumes from the cursor.
   * Returns an error that ends the session, or null.
   */
  handle(raw, s) {
    let ev = raw;
    if (typeof raw === 'string') {
      try {
        ev = JSON.parse(raw);
      } catch (e) {
        return new Error(`undecodable event: ${e.message}`);
      }
    }
    if (!ev || typeof ev !== 'object') return new Error('undecodable event: not an object');
    s.progress = true;
    if (ev.type === 'sent' || ev.type === 'error') {
      this.reply(ev);
      return null;
    }
    if (ev.type === 'cursor') {
      // The server's inbox ends below our cursor: continue from its head,
      // or every new message would be dropped as already handled.
      if (ev.cursor < this.cursor) {
        this.report(new Error(`server moved the cursor back from ${this.cursor} to ${ev.cursor}`));
        this.cursor = ev.cursor;
        this.client.saveCursor(ev.cursor);
      }
      return null;
    }
    if (!ev.seq) {
      this.emit(ev);
      return null;
    }
    if (ev.seq <= this.cursor) return null;
    if (ev.seq > this.cursor + 1) {
      if (this.gap.cursor !== this.cursor || this.gap.seq !== ev.seq) this.gap = {cursor: this.cursor, seq: ev.seq, count: 0};
      if (++this.gap.count <= MAX_GAP_RETRIES) return new GapError();
      this.report(new Error(`the server resumes from ${this.cursor} at ${ev.seq} every time; accepting the gap`));
    }
    this.cursor = ev.seq;
    this.client.saveCursor(ev.seq);
    this.delivered.push(ev.seq);
    if (this.delivered.length > 1000) this.delivered.splice(0, this.delivered.length - 1000);
    this.emit(ev);
    return null;
  }

  emit(ev) {
    if (this.closed) return;
    try {
      this.opts.onEvent?.(ev);
    } catch (e) {
      console.error('chatgate: onEvent threw', e);
    }
  }

  /** Routes a WebSocket "sent" or "error" frame to the send waiting for it. */
  reply(ev) {
    const waiters = ev.client_msg_id ? this.wsWaiting.get(ev.client_msg_id) : null;
    if (!waiters) {
      if (ev.type === 'error') this.report(new APIError(0, ev.error?.code, ev.error?.message));
      return;
    }
    this.wsWaiting.delete(ev.client_msg_id);
    for (const w of waiters) {
      if (ev.type === 'sent') w.resolve(ev.message);
      else w.reject(new APIError(statusOf(ev.error?.code), ev.error?.code, ev.error?.message));
    }
  }

  // ---- WebSocket: GET /v1/ws, one event per text frame ----

  wsSession(s) {
    return new Promise((resolve) => {
      const u = new URL(`${this.server}/v1/ws`);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      u.search = `cursor=${this.cursor}&access_token=${encodeURIComponent(this.client.token)}`;
      let ws;
      try {
        ws = new WebSocket(u);
      } catch (e) {
        resolve(new RefusedError(e.message));
        return;
      }
      this.client.lastActivity = Date.now();
      let ended = false;
      const finish = (err) => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        if (this.ws === ws) this.ws = null;
        this.endSession = null;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
        for (const [, waiters] of this.wsWaiting) for (const w of waiters) w.reject(new ClosedError());
        this.wsWaiting.clear();
        resolve(err);
      };
      const timer = setTimeout(() => finish(new Error('WebSocket handshake timed out')), this.opts.connectTimeout);
      this.endSession = () => finish(new ClosedError('closed'));
      ws.onopen = () => {
        clearTimeout(timer);
        this.ws = ws;
        this.markUp(s);
      };
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string') return;
        const err = this.handle(e.data, s);
        if (err) finish(err);
      };
      ws.onclose = (e) => finish(new Error(`WebSocket closed (${e.code}${e.reason ? ' ' + e.reason : ''})`));
    });
  }

  wsWrite(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    this.client.lastActivity = Date.now();
    return true;
  }

  wsSend(input) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        done();
        reject(new ClosedError('no answer to the send frame in time'));
      }, this.client.requestTimeout);
      const w = {
        resolve: (m) => { clearTimeout(t); resolve(m); },
        reject: (e) => { clearTimeout(t); reject(e); },
      };
      const done = () => {
        const ws = this.wsWaiting.get(input.client_msg_id);
        if (!ws) return;
        const i = ws.indexOf(w);
        if (i >= 0) ws.splice(i, 1);
        if (!ws.length) this.wsWaiting.delete(input.client_msg_id);
      };
      const list = this.wsWaiting.get(input.client_msg_id) || [];
      list.push(w);
      this.wsWaiting.set(input.client_msg_id, list);
      if (!this.wsWrite({type: 'send', ...input})) {
        done();
        w.reject(new ClosedError());
      }
    });
  }

  // ---- SSE: EventSource on GET /v1/sse, with Last-Event-ID on its own reconnects ----

  sseSession(s) {
    return new Promise((resolve) => {
      const u = `${this.server}/v1/sse?cursor=${this.cursor}&access_token=${encodeURIComponent(this.client.token)}`;
      const es = new EventSource(u);
      this.client.lastActivity = Date.now();
      let ended = false, timer = 0;
      const finish = (err) => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        this.endSession = null;
        es.onopen = es.onmessage = es.onerror = null;
        es.close();
        resolve(err);
      };
      // EventSource reconnects by itself (sending Last-Event-ID, which the
      // server prefers to the URL's cursor); it gets connectTimeout to do so.
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => finish(new Error('EventSource could not (re)connect in time')), this.opts.connectTimeout);
      };
      arm();
      this.endSession = () => finish(new ClosedError('closed'));
      es.onopen = () => {
        clearTimeout(timer);
        if (s.up) this.setState(true);
        this.markUp(s);
      };
      es.onmessage = (e) => {
        const err = this.handle(e.data, s);
        if (err) finish(err);
      };
      es.onerror = () => {
        if (es.readyState === EventSource.CLOSED) {
          // A non-200 answer or another content type: the browser gives up.
          finish(s.up ? new Error('the event stream was closed') : new RefusedError('EventSource refused'));
          return;
        }
        if (s.up) this.setState(false);
        arm();
      };
    });
  }

  // ---- long polling (GET /v1/longpoll) and short polling (GET /v1/poll) ----

  async pollSession(s, long) {
    const path = long ? '/v1/longpoll' : '/v1/poll';
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    this.abort.signal.addEventListener('abort', onAbort, {once: true});
    this.endSession = () => ctl.abort();
    try {
      for (let first = true; ; first = false) {
        const cur = this.cursor;
        const wait = long && !first ? this.opts.longPollWait : 0;
        let q = `${path}?cursor=${cur}&limit=100`;
        if (long) q += `&wait=${wait}`;
        const start = Date.now();
        let page;
        try {
          page = await this.client.api('GET', q, undefined, {base: this.server, signal: ctl.signal, timeout: wait * 1000 + this.opts.connectTimeout});
        } catch (e) {
          return e instanceof APIError && !e.temporary && e.status !== 401 ? new RefusedError(e.message) : e;
        }
        this.markUp(s);
        s.progress = true;
        for (const ev of page.events || []) {
          const err = this.handle(ev, s);
          if (err) return err;
        }
        if (!(page.events || []).length && page.cursor < cur) {
          // The server pulled a cursor beyond its inbox head back to the head.
          this.report(new Error(`server moved the cursor back from ${cur} to ${page.cursor}`));
          this.cursor = page.cursor;
          this.client.saveCursor(page.cursor);
        }
        if (page.has_more) continue;
        let pause = 0;
        if (!long) pause = this.opts.pollInterval;
        else if (!(page.events || []).length && wait > 0 && Date.now() - start < wait * 100) pause = this.opts.minBackoff;
        if (pause) {
          await new Promise((resolve) => {
            const t = setTimeout(done, pause);
            function done() {
              clearTimeout(t);
              resolve();
            }
            this.kick = done;
            ctl.signal.addEventListener('abort', done, {once: true});
          });
          this.kick = null;
        }
        if (ctl.signal.aborted) return new ClosedError('closed');
      }
    } finally {
      this.endSession = null;
      this.abort.signal.removeEventListener('abort', onAbort);
    }
  }

  // ---- sending, typing, heartbeats ----

  /**
   * Stores a message and returns it: over the WebSocket when that is up,
   * otherwise POST /v1/messages. Retries network errors, dropped
   * connections and 5xx with the same client_msg_id (the server then
   * answers with the message it stored, never a duplicate) for up to
   * sendTimeout; a refusal (4xx) throws APIError at once.
   */
  async send(input) {
    input = {...input, client_msg_id: input.client_msg_id || newClientMsgID()};
    const deadline = Date.now() + this.opts.sendTimeout;
    for (let n = 0; ; n++) {
      try {
        const m = this.ws
          ? await this.wsSend(input)
          : (await this.client.api('POST', '/v1/messages', input, {base: this.server})).message;
        this.kick?.(); // short polling: fetch the echo (and anything else) now
        return m;
      } catch (e) {
        if (!retryable(e) || this.closed || Date.now() > deadline) throw e;
        await sleep(backoff(this.opts.minBackoff, this.opts.maxBackoff, n));
      }
    }
  }

  /** Tells the other members that the user is typing (not retried). */
  async typing(conversationID) {
    if (this.wsWrite({type: 'typing', conversation_id: conversationID})) return;
    try {
      await this.client.api('POST', '/v1/typing', {conversation_id: conversationID}, {base: this.server});
    } catch (e) {
      this.report(e);
    }
  }

  /**
   * Every heartbeat interval without other activity, while short polling: POST /v1/heartbeat.
   * An open stream or a held long poll already keeps the device online (docs/protocol.md).
   */
  scheduleHeartbeat(delay = this.heartbeatMs) {
    clearTimeout(this.hbTimer);
    this.hbTimer = setTimeout(async () => {
      if (this.closed) return;
      if (this.connected && this.transport !== 'polling') {
        this.scheduleHeartbeat();
        return;
      }
      const since = Date.now() - this.client.lastActivity;
      if (since < this.heartbeatMs) {
        this.scheduleHeartbeat(this.heartbeatMs - since);
        return;
      }
      this.heartbeats++;
      if (!this.wsWrite({type: 'heartbeat'})) {
        try {
          await this.client.api('POST', '/v1/heartbeat', undefined, {base: this.server, signal: this.abort.signal});
        } catch { /* the connection's own reconnects deal with outages */ }
      }
      if (!this.closed) this.scheduleHeartbeat();
    }, delay);
  }
}

function statusOf(code) {
  switch (code) {
    case 'unauthorized': return 401;
    case 'forbidden': return 403;
    case 'user_not_found': case 'group_not_found': case 'conversation_not_found': return 404;
    case 'client_msg_id_conflict': return 409;
    case 'body_too_large': return 413;
    case 'rate_limited': case 'too_many_connections': return 429;
    case 'internal_error': return 500;
    case 'unavailable': return 503;
  }
  return 400;
}
