// The REST API: the session (kept in sessionStorage, so it lasts as long as the tab), requests with the
// access token, refresh before the token expires (and once more on a 401), and errors in plain words.

const SESSION_KEY = "chat.session";

/** An API or network failure, with `code` (the API's stable code) and `text` (plain words for people). */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = (body && body.error) || {};
    super(e.message || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (status === 0 ? "NETWORK" : "HTTP_" + status);
    this.fields = e.fields || null;
    this.retryAfterMs = e.retryAfterMs ?? (e.retryAfter != null ? e.retryAfter * 1000 : null);
    this.text = plainWords(this.code, this.message, { fields: this.fields, retryAfterMs: this.retryAfterMs });
  }
}

/** Turns an error code (REST or Socket.IO ack) into a sentence a person can act on. */
export function plainWords(code, message = "", { fields = null, retryAfterMs = null, what = "" } = {}) {
  const wait = retryAfterMs != null ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : null;
  switch (code) {
    case "RATE_LIMITED":
      return `${what || "Too many requests"}: please wait ${wait ?? "a few"} second${wait === 1 ? "" : "s"} and try again.`;
    case "FORBIDDEN":
      return `You are not allowed to do that${message ? ` (${message})` : ""}.`;
    case "NOT_FOUND":
      return `Not found${message ? `: ${message}` : ""}. It may have been deleted, or the link is no longer valid.`;
    case "VALIDATION": {
      if (fields && typeof fields === "object") {
        const parts = Object.entries(fields).map(([f, msgs]) => `${f} ${[].concat(msgs).join(", ")}`);
        if (parts.length) return `Please check: ${parts.join("; ")}.`;
      }
      return `That was not accepted: ${message || "invalid input"}.`;
    }
    case "UNAUTHORIZED":
      return message === "invalid credentials"
        ? "Wrong username, e-mail or password."
        : "Your session has ended; please log in again.";
    case "CONFLICT":
      return `${message.charAt(0).toUpperCase()}${message.slice(1)}.`;
    case "LAST_ADMIN":
      return "You are the last admin of this room: make another member admin first.";
    case "UNAVAILABLE":
      return "The server is busy or briefly unavailable. Please try again in a moment.";
    case "NETWORK":
      return "Cannot reach the server. Check your connection and try again.";
    case "TIMEOUT":
      return "The server did not answer in time. Please try again.";
    default:
      return message ? `Something went wrong: ${message}.` : "Something went wrong.";
  }
}

export class Api {
  constructor(base = "/api/v1") {
    this.base = base;
    this.session = load();
    this.refreshing = null;
    this.timer = null;
    this.onSessionEnd = () => {};
    if (this.session) this.schedule();
  }

  get user() {
    return this.session?.user || null;
  }

  get token() {
    return this.session?.accessToken || null;
  }

  /** Starts a session from a login or register response. */
  begin(body) {
    this.session = {
      user: body.user,
      accessToken: body.accessToken,
      refreshToken: body.refreshToken,
      expiresAt: Date.now() + body.expiresIn * 1000,
      expiresIn: body.expiresIn,
    };
    save(this.session);
    this.schedule();
  }

  end() {
    clearTimeout(this.timer);
    this.session = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  /** Refreshes when a quarter of the token's life (at most a minute) is left. */
  schedule() {
    clearTimeout(this.timer);
    if (!this.session) return;
    const life = this.session.expiresIn * 1000;
    const margin = Math.min(60_000, life / 4);
    const due = Math.max(1000, this.session.expiresAt - margin - Date.now());
    this.timer = setTimeout(() => this.refresh().catch(() => {}), due);
  }

  /** Exchanges the refresh token for a new pair (one at a time); ends the session when refused. */
  refresh() {
    if (!this.session) return Promise.reject(new ApiError(401, null, "not signed in"));
    if (this.refreshing) return this.refreshing;
    const refreshToken = this.session.refreshToken;
    this.refreshing = (async () => {
      try {
        const r = await this.raw("POST", "/auth/refresh", { refreshToken }, false);
        if (!this.session) throw new ApiError(401, null, "signed out");
        Object.assign(this.session, {
          accessToken: r.accessToken,
          refreshToken: r.refreshToken,
          expiresAt: Date.now() + r.expiresIn * 1000,
          expiresIn: r.expiresIn,
        });
        save(this.session);
        this.schedule();
        return this.session.accessToken;
      } catch (e) {
        if (e.status === 401) {
          this.end();
          this.onSessionEnd(e);
        } else {
          // The network or the server failed: try again shortly, the refresh token is still good.
          clearTimeout(this.timer);
          this.timer = setTimeout(() => this.refresh().catch(() => {}), 5000);
        }
        throw e;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** A request with the access token; on a 401 it refreshes once and tries again. */
  async call(method, path, body) {
    try {
      return await this.raw(method, path, body, true);
    } catch (e) {
      if (e.status !== 401 || !this.session) throw e;
      await this.refresh();
      return this.raw(method, path, body, true);
    }
  }

  async raw(method, path, body, auth) {
    const headers = { accept: "application/json" };
    if (auth && this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, null, "network error");
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) throw new ApiError(res.status, json, res.statusText);
    return json;
  }

  async logout() {
    const refreshToken = this.session?.refreshToken;
    try {
      if (this.session) await this.raw("POST", "/auth/logout", { refreshToken }, true);
    } finally {
      this.end();
    }
  }
}

function load() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return s && s.accessToken && s.refreshToken && s.user ? s : null;
  } catch {
    return null;
  }
}

function save(s) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
}
