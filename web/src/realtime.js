// The Socket.IO connection to a gateway: its state as the user sees it (connecting, live, reconnecting,
// recovered, offline), the access token on every (re)connect, and acks with a timeout.
//
// Recovery: the gateways keep each socket's session (rooms, position in the event stream) for
// RECOVERY_WINDOW_SECS; socket.io-client presents it on reconnect, and a recovered socket gets every
// event it missed replayed by the server (`socket.recovered`). A reconnect that is not recovered (the
// window passed, the gateway's Redis lost it) gets a fresh socket: the app then joins its rooms again
// with `sinceSeq` to fill the gap. Either way `onConnect(recovered)` tells the app which.

import { io } from "./socket.io.esm.min.js";

// States shown by the page: connecting, live, reconnecting, recovered, offline.

export class Realtime {
  /**
   * @param {string[]} urls gateway URLs (empty: this page's origin); one is picked at random, and the
   *   next one is tried after a few failed reconnects
   * @param {() => string|null} token the current access token
   * @param {object} hooks onState(state, detail), onConnect(recovered), onAuthError(err), onEvent(ev, data)
   */
  constructor(urls, token, hooks) {
    this.urls = urls.length ? urls : [""];
    this.index = Math.floor(Math.random() * this.urls.length);
    this.token = token;
    this.hooks = hooks;
    this.state = "offline";
    this.socket = null;
    this.failures = 0;
    this.recoveredTimer = null;
  }

  get url() {
    return this.urls[this.index] || window.location.origin;
  }

  get connected() {
    return !!this.socket?.connected;
  }

  setState(state, detail = "") {
    this.state = state;
    this.hooks.onState(state, detail);
  }

  start() {
    this.stop();
    this.setState("connecting");
    const socket = io(this.url, {
      // WebSocket only: no cross-origin long-polling (the API and the gateways are different origins
      // under `make up`), and no sticky sessions needed behind a load balancer.
      transports: ["websocket"],
      auth: (cb) => cb({ token: this.token() }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      timeout: 8000,
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.failures = 0;
      clearTimeout(this.recoveredTimer);
      if (socket.recovered) {
        this.setState("recovered", "missed messages were filled in");
        // "recovered" stays on screen for a moment, then it is just live.
        this.recoveredTimer = setTimeout(() => {
          if (this.socket === socket && socket.connected) this.setState("live");
        }, 6000);
      } else {
        this.setState("live");
      }
      this.hooks.onConnect(socket.recovered);
    });
    socket.on("disconnect", (reason) => {
      clearTimeout(this.recoveredTimer);
      if (reason === "io client disconnect") this.setState("offline");
      else this.setState("reconnecting", reason);
      // The server refused the socket (`io server disconnect`, e.g. a revoked token): socket.io does
      // not reconnect by itself then; try once more with a fresh token.
      if (reason === "io server disconnect") this.hooks.onAuthError({ message: "disconnected by the server" });
    });
    socket.on("connect_error", (err) => {
      const code = err?.data?.code;
      if (code === "UNAUTHORIZED") {
        this.setState("reconnecting", "signing in again");
        this.hooks.onAuthError(err);
        return;
      }
      this.setState("reconnecting", err?.message || "cannot reach the gateway");
      // socket.io retries the same gateway; after a few failures, move on to the next one (a fresh
      // socket: the app refills its rooms by seq).
      this.failures++;
      if (this.failures >= 4 && this.urls.length > 1) {
        this.next();
        return;
      }
      // A CONNECT the server refused (e.g. UNAVAILABLE) is not retried by socket.io: retry shortly.
      if (!socket.active) setTimeout(() => this.socket === socket && socket.connect(), 2000);
    });
    socket.io.on("reconnect_attempt", () => {
      if (!socket.connected) this.setState("reconnecting", "reconnecting");
    });
    socket.onAny((ev, data) => this.hooks.onEvent(ev, data));
  }

  next() {
    this.index = (this.index + 1) % this.urls.length;
    this.start();
  }

  /** Reconnects after the token changed (a refused CONNECT does not retry by itself). */
  reconnect() {
    if (this.socket && !this.socket.connected) this.socket.connect();
  }

  stop() {
    clearTimeout(this.recoveredTimer);
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.io.removeAllListeners();
      this.socket.offAny();
      this.socket.disconnect();
      this.socket = null;
    }
    this.setState("offline");
  }

  /** Emits with an ack; resolves with the ack body, or `{ok:false, error:{code:"TIMEOUT"|"OFFLINE"}}`. */
  async request(ev, payload, ms = 8000) {
    const s = this.socket;
    if (!s || !s.connected) return { ok: false, error: { code: "OFFLINE", message: "not connected" } };
    try {
      return await s.timeout(ms).emitWithAck(ev, payload);
    } catch {
      return { ok: false, error: { code: "TIMEOUT", message: "no answer from the server" } };
    }
  }

  /** Fire and forget (volatile things like typing). */
  emit(ev, payload) {
    if (this.socket?.connected) this.socket.emit(ev, payload);
  }
}
