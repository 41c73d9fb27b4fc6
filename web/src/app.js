// The chat client: one page, no framework. State lives in plain objects (`rooms`, `users`); the DOM is
// updated in place from them. Every piece of user text goes through `textContent` (see dom.js).

import { Api, ApiError, plainWords } from "./api.js";
import { Realtime } from "./realtime.js";
import { $, ago, formatTime, h, randomId, replace, setText } from "./dom.js";

const PAGE = 30; // history page size
const TYPING_REFRESH_MS = 2000; // while typing, say so again this often
const TYPING_IDLE_MS = 3000; // stop saying so after this long without a keystroke
const TYPING_SHOW_MS = 6000; // forget someone's typing if no refresh came (the server expires it too)
const INVITE_KEY = "chat.invite";

const api = new Api();
let config = { apiBase: "/api/v1", gatewayUrls: [] };
let rt = null;
/** @type {Map<string, any>} room id -> room state */
const rooms = new Map();
/** user id -> {id, username, online, lastSeen} */
const users = new Map();
const userLookups = new Map();
let current = null; // id of the open room
let view = null; // {roomId, els: Map<seq, li>, pendingEls: Map<clientMsgId, li>}
let roomsReload = null;
let presenceTimer = null;

const me = () => api.user;

// ---------------------------------------------------------------------------------------------------
// Start

async function main() {
  try {
    const r = await fetch("/config.json", { headers: { accept: "application/json" } });
    if (r.ok) config = { ...config, ...(await r.json()) };
  } catch {
    /* defaults: same origin */
  }
  api.base = config.apiBase || "/api/v1";
  api.onSessionEnd = () => signedOut("Your session has ended; please log in again.");

  const m = window.location.pathname.match(/^\/invite\/([^/?#]+)/);
  if (m) {
    sessionStorage.setItem(INVITE_KEY, safeDecode(m[1]));
    history.replaceState(null, "", "/");
  }

  bindAuth();
  bindChat();
  if (api.session) enter();
  else showAuth();
}

function showAuth() {
  $("#auth-view").hidden = false;
  $("#chat-view").hidden = true;
  $("#me").hidden = true;
  $("#logout").hidden = true;
  $("#invite-hint").hidden = !sessionStorage.getItem(INVITE_KEY);
  setConn("offline");
  $("#login-name").focus();
}

async function enter() {
  $("#auth-view").hidden = true;
  $("#chat-view").hidden = false;
  $("#logout").hidden = false;
  const meEl = $("#me");
  meEl.hidden = false;
  replace(meEl, "Signed in as ", h("strong", { text: me().username }));
  users.set(me().id, { id: me().id, username: me().username, online: true, lastSeen: null });
  try {
    await loadRooms();
  } catch (e) {
    if (!api.session) return;
    notice(errText(e));
  }
  rt = new Realtime(config.gatewayUrls || [], () => api.token, {
    onState: setConn,
    onConnect,
    onAuthError,
    onEvent,
  });
  rt.start();
  runDiscover();
  clearInterval(presenceTimer);
  presenceTimer = setInterval(() => {
    if (current) renderMembers(rooms.get(current));
  }, 30_000);
  showInvite();
}

function signedOut(message) {
  rt?.stop();
  rt = null;
  clearInterval(presenceTimer);
  rooms.clear();
  users.clear();
  current = null;
  view = null;
  replace($("#room-list"));
  replace($("#messages"));
  document.body.classList.remove("in-room");
  $("#room").hidden = true;
  $("#no-room").hidden = false;
  showAuth();
  if (message) notice(message);
}

// ---------------------------------------------------------------------------------------------------
// Notices and errors

let noticeTimer = null;
function notice(text, kind = "error") {
  const el = $("#notice");
  setText(el, text);
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.hidden = true), 8000);
}

function errText(e) {
  if (e instanceof ApiError) return e.text;
  return plainWords("", e?.message || String(e));
}

function ackText(a, what) {
  const e = a.error || {};
  return plainWords(e.code, e.message, { retryAfterMs: e.retryAfterMs, what });
}

function formError(form, text) {
  setText(form.querySelector(".form-error"), text || "");
}

// ---------------------------------------------------------------------------------------------------
// Connection state

const CONN_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  recovered: "Recovered",
  offline: "Offline",
};

function setConn(state, detail = "") {
  const el = $("#conn");
  el.dataset.state = state;
  el.title = detail || "";
  setText($("#conn-text"), CONN_TEXT[state] || state);
  document.body.dataset.conn = state;
}

async function onConnect(recovered) {
  // A recovered socket is back in its rooms and the server replays what it missed; a fresh one joins
  // every room again, asking for the messages after the last one it has.
  if (!recovered) await joinAll();
  else if (current) markReadSoon(rooms.get(current));
  if (current) loadMembers(rooms.get(current)).catch(() => {});
  if (!recovered) {
    flushOutbox();
    // The sinceSeq replay brought the new messages; edits and deletes of older ones during the gap
    // are in the latest page of history.
    if (current) refreshLatest(rooms.get(current));
  }
}

function onAuthError() {
  if (!api.session) return;
  api
    .refresh()
    .then(() => rt?.reconnect())
    .catch((e) => {
      if (api.session) notice(errText(e));
    });
}

// ---------------------------------------------------------------------------------------------------
// Rooms

function roomFrom(s, old) {
  const r = old || {
    messages: new Map(),
    loaded: false,
    hasOlder: false,
    oldest: null,
    members: new Map(),
    membersLoaded: false,
    typing: new Map(),
    pending: new Map(),
    lastSeq: 0,
    readSeq: 0,
    deliveredSeq: 0,
    unread: 0,
    lastMessage: null,
  };
  r.id = s.id;
  r.name = s.name;
  r.description = s.description || "";
  r.isPrivate = !!s.isPrivate;
  r.inviteCode = s.inviteCode || null;
  r.role = s.role || s.myRole || r.role || "member";
  r.memberCount = s.memberCount ?? r.memberCount ?? 1;
  r.joinedAt = s.joinedAt || r.joinedAt || new Date().toISOString();
  if (s.lastSeq != null) r.lastSeq = Math.max(r.lastSeq, s.lastSeq);
  if (s.readSeq != null) r.readSeq = Math.max(r.readSeq, s.readSeq);
  if (s.deliveredSeq != null) r.deliveredSeq = Math.max(r.deliveredSeq, s.deliveredSeq);
  if (s.unreadCount != null && !old) r.unread = s.unreadCount;
  if (s.lastMessage && (!r.lastMessage || s.lastMessage.seq >= r.lastMessage.seq)) r.lastMessage = s.lastMessage;
  return r;
}

async function loadRooms() {
  const list = await api.call("GET", "/rooms");
  const seen = new Set();
  for (const s of list) {
    seen.add(s.id);
    rooms.set(s.id, roomFrom(s, rooms.get(s.id)));
    if (s.lastMessage) ensureUser(s.lastMessage.senderId);
  }
  for (const id of [...rooms.keys()]) if (!seen.has(id)) dropRoom(id, null);
  renderRoomList();
}

/** Reloads the room list soon (a room appeared that we did not know). */
function reloadRoomsSoon() {
  clearTimeout(roomsReload);
  roomsReload = setTimeout(async () => {
    const before = new Set(rooms.keys());
    try {
      await loadRooms();
    } catch {
      return;
    }
    for (const [id, room] of rooms) if (!before.has(id)) joinRoom(room);
  }, 200);
}

/** Adds a room the user just created or joined, joins it on the socket and opens it. */
async function addRoom(view, open = true) {
  const room = roomFrom(view, rooms.get(view.id));
  rooms.set(room.id, room);
  renderRoomList();
  await joinRoom(room);
  if (open) await openRoom(room.id);
  runDiscover();
  return room;
}

function dropRoom(id, message) {
  const room = rooms.get(id);
  rooms.delete(id);
  if (current === id) closeRoom();
  renderRoomList();
  if (message && room) notice(message.replace("{room}", () => room.name), "info");
}

async function joinAll() {
  for (const room of [...rooms.values()]) await joinRoom(room);
}

/** join_room on the socket; with history loaded, asks for (and pages through) what came after it. */
async function joinRoom(room) {
  if (!rt) return;
  let since = room.loaded ? room.lastSeq : null;
  for (let pages = 0; pages < 20; pages++) {
    const payload = since != null ? { roomId: room.id, sinceSeq: since } : { roomId: room.id };
    const a = await rt.request("join_room", payload);
    if (!rooms.has(room.id)) return;
    if (!a.ok) {
      const code = a.error?.code;
      if (code === "NOT_FOUND" || code === "FORBIDDEN") dropRoom(room.id, "You are no longer a member of “{room}”.");
      else if (code !== "OFFLINE" && code !== "TIMEOUT") notice(ackText(a));
      return;
    }
    room.role = a.role || room.role;
    if (a.memberCount != null) room.memberCount = a.memberCount;
    for (const uid of a.online || []) setPresence(uid, true, null);
    room.lastSeq = Math.max(room.lastSeq, a.lastSeq || 0);
    room.readSeq = Math.max(room.readSeq, a.readSeq || 0);
    room.deliveredSeq = Math.max(room.deliveredSeq, a.deliveredSeq || 0);
    room.unread = Math.max(0, room.lastSeq - room.readSeq);
    if (since != null && a.hasMore && a.replayedUpTo > since) {
      since = a.replayedUpTo;
      continue;
    }
    break;
  }
  if (room.lastSeq > room.deliveredSeq) deliveredSoon(room, room.lastSeq);
  if (isReading(room)) markReadSoon(room);
  renderRoomList();
  if (current === room.id) renderHeader(room);
}

function isReading(room) {
  return room && current === room.id && document.visibilityState === "visible";
}

function markReadSoon(room) {
  if (!room) return;
  clearTimeout(room.readTimer);
  room.readTimer = setTimeout(async () => {
    if (!isReading(room) || room.lastSeq <= room.readSeq || !rt?.connected) {
      if (isReading(room) && room.unread) {
        room.unread = 0;
        renderRoomList();
      }
      return;
    }
    const seq = room.lastSeq;
    const a = await rt.request("mark_read", { roomId: room.id, seq });
    if (a.ok) {
      room.readSeq = Math.max(room.readSeq, a.seq ?? seq);
      room.unread = Math.max(0, room.lastSeq - room.readSeq);
      renderRoomList();
    }
  }, 250);
}

function deliveredSoon(room, seq) {
  room.deliverUpTo = Math.max(room.deliverUpTo || 0, seq);
  clearTimeout(room.deliverTimer);
  room.deliverTimer = setTimeout(async () => {
    const upTo = room.deliverUpTo;
    if (upTo <= room.deliveredSeq || !rt?.connected) return;
    const a = await rt.request("message_delivered", { roomId: room.id, seq: upTo });
    if (a.ok) room.deliveredSeq = Math.max(room.deliveredSeq, a.seq ?? upTo);
  }, 200);
}

// ---------------------------------------------------------------------------------------------------
// Users and presence

/** `decodeURIComponent`, or the text as it is when it is not valid percent-encoding (a mangled link). */
function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function userName(id) {
  return users.get(id)?.username || "…";
}

function ensureUser(id) {
  if (!id || users.get(id)?.username || userLookups.has(id)) return;
  const p = api
    .call("GET", `/users/${encodeURIComponent(id)}`)
    .then((u) => {
      users.set(id, { id, username: u.username, online: !!u.online, lastSeen: u.lastSeen || null });
      refreshNames();
    })
    .catch(() => {})
    .finally(() => userLookups.delete(id));
  userLookups.set(id, p);
}

function setPresence(id, online, lastSeen) {
  const u = users.get(id) || { id, username: null };
  u.online = online;
  if (lastSeen) u.lastSeen = lastSeen;
  users.set(id, u);
  if (!u.username) ensureUser(id);
}

function refreshNames() {
  if (current) {
    const room = rooms.get(current);
    for (const [seq, li] of view?.els || []) {
      const m = room.messages.get(seq);
      if (m) setText(li.querySelector(".author"), m.senderId === me().id ? "You" : userName(m.senderId));
    }
    renderMembers(room);
    renderTyping(room);
  }
  renderRoomList();
}

// ---------------------------------------------------------------------------------------------------
// Socket events

function onEvent(ev, d) {
  if (!d || typeof d !== "object") return;
  const room = d.roomId ? rooms.get(d.roomId) : null;
  switch (ev) {
    case "welcome":
      // After a recovery the server names the rooms it put the socket back in; join any it did not.
      if (d.recovered) {
        const back = new Set(d.rooms || []);
        (async () => {
          for (const r of [...rooms.values()]) if (!back.has(r.id)) await joinRoom(r);
          flushOutbox();
        })();
      }
      break;
    case "receive_message":
      if (!room) return reloadRoomsSoon();
      onMessage(room, d);
      break;
    case "message_edited":
      if (room) onEdited(room, d);
      break;
    case "message_deleted":
      if (room) onDeleted(room, d);
      break;
    case "message_read":
      if (room) onCursor(room, d.userId, d.seq, true);
      break;
    case "delivered":
      if (room) onCursor(room, d.userId, d.seq, false);
      break;
    case "typing":
      if (room && d.userId !== me().id) onTyping(room, d.userId, !!d.isTyping);
      break;
    case "user_status":
      setPresence(d.userId, !!d.online, d.lastSeen);
      if (current) {
        renderMembers(rooms.get(current));
        renderHeader(rooms.get(current));
      }
      break;
    case "user_joined":
      if (!room) return reloadRoomsSoon();
      if (d.userId !== me().id) {
        ensureUser(d.userId);
        room.memberCount = (room.memberCount || 0) + (room.members.has(d.userId) ? 0 : 1);
        if (room.membersLoaded) loadMembers(room).catch(() => {});
        else renderHeader(room);
      }
      break;
    case "user_left":
      if (!room) return;
      if (d.userId === me().id) dropRoom(room.id, "You are no longer a member of “{room}”.");
      else {
        room.members.delete(d.userId);
        room.memberCount = Math.max(1, (room.memberCount || 1) - 1);
        if (current === room.id) {
          renderMembers(room);
          renderHeader(room);
          renderReceipts(room);
        }
      }
      break;
    case "role_changed":
      if (!room) return;
      if (d.userId === me().id) {
        api
          .call("GET", `/rooms/${room.id}`)
          .then((v) => {
            roomFrom({ ...v, role: v.myRole }, room);
            room.inviteCode = v.inviteCode || null;
            if (current === room.id) renderHeader(room);
            loadMembers(room).catch(() => {});
          })
          .catch(() => {});
      } else if (room.membersLoaded) loadMembers(room).catch(() => {});
      break;
    case "room_deleted":
      if (room) dropRoom(room.id, "The room “{room}” was deleted.");
      break;
    case "resync":
      if (room) resync(room);
      break;
    case "error":
      notice(plainWords(d.code, d.message, { retryAfterMs: d.retryAfterMs }));
      break;
    default:
      break;
  }
}

function onMessage(room, m) {
  const fresh = m.seq > room.lastSeq;
  room.lastSeq = Math.max(room.lastSeq, m.seq);
  if (!room.lastMessage || m.seq >= room.lastMessage.seq) room.lastMessage = m;
  const mine = m.senderId === me().id;
  if (mine && m.clientMsgId) settlePending(room, m.clientMsgId);
  upsert(room, m);
  if (!mine) {
    ensureUser(m.senderId);
    if (fresh && m.seq > room.readSeq && !isReading(room)) room.unread += 1;
    deliveredSoon(room, m.seq);
    if (room.typing.has(m.senderId)) onTyping(room, m.senderId, false);
  }
  if (isReading(room)) markReadSoon(room);
  renderRoomList();
}

function onEdited(room, d) {
  const m = room.messages.get(d.seq) || [...room.messages.values()].find((x) => x.id === d.id);
  if (!m) return;
  m.content = d.content;
  m.editedAt = d.editedAt;
  upsert(room, m);
  if (room.lastMessage?.id === m.id) room.lastMessage = m;
  renderRoomList();
}

function onDeleted(room, d) {
  const id = d.messageId || d.id;
  const m = room.messages.get(d.seq) || [...room.messages.values()].find((x) => x.id === id);
  if (!m) return;
  m.content = null;
  m.deletedAt = d.deletedAt || new Date().toISOString();
  upsert(room, m);
  if (room.lastMessage?.id === m.id) room.lastMessage = m;
  renderRoomList();
}

function onCursor(room, userId, seq, read) {
  if (userId === me().id) {
    if (read) {
      room.readSeq = Math.max(room.readSeq, seq);
      room.unread = Math.max(0, room.lastSeq - room.readSeq);
      renderRoomList();
    } else room.deliveredSeq = Math.max(room.deliveredSeq, seq);
    return;
  }
  const mem = room.members.get(userId);
  if (!mem) {
    if (!room.membersLoaded) loadMembers(room).catch(() => {});
    return;
  }
  if (read) mem.readSeq = Math.max(mem.readSeq || 0, seq);
  mem.deliveredSeq = Math.max(mem.deliveredSeq || 0, seq);
  renderReceipts(room);
}

function onTyping(room, userId, isTyping) {
  clearTimeout(room.typing.get(userId));
  if (isTyping) {
    ensureUser(userId);
    room.typing.set(
      userId,
      setTimeout(() => onTyping(room, userId, false), TYPING_SHOW_MS),
    );
  } else room.typing.delete(userId);
  renderTyping(room);
}

async function resync(room) {
  try {
    let after = room.loaded ? room.lastSeq : null;
    if (after == null) return;
    for (let i = 0; i < 20; i++) {
      const page = await api.call("GET", `/rooms/${room.id}/messages?after=${after}&limit=100`);
      for (const m of page.messages) onMessage(room, m);
      if (!page.hasMore || !page.messages.length) break;
      after = page.messages[page.messages.length - 1].seq;
    }
  } catch (e) {
    notice(errText(e));
  }
}

// ---------------------------------------------------------------------------------------------------
// History

async function loadLatest(room) {
  const page = await api.call("GET", `/rooms/${room.id}/messages?limit=${PAGE}`);
  room.loaded = true;
  room.hasOlder = page.hasMore;
  room.oldest = page.messages.length ? page.messages[0].seq : null;
  for (const m of page.messages) {
    room.lastSeq = Math.max(room.lastSeq, m.seq);
    ensureUser(m.senderId);
    room.messages.set(m.seq, { ...room.messages.get(m.seq), ...m });
  }
  if (room.oldest == null && room.messages.size) room.oldest = Math.min(...room.messages.keys());
  const last = page.messages[page.messages.length - 1];
  if (last && (!room.lastMessage || last.seq >= room.lastMessage.seq)) room.lastMessage = last;
}

/** Re-reads the newest page of history into a loaded room (after a reconnect that was not recovered). */
async function refreshLatest(room) {
  if (!room?.loaded) return;
  try {
    const page = await api.call("GET", `/rooms/${room.id}/messages?limit=${PAGE}`);
    for (const m of page.messages) {
      const old = room.messages.get(m.seq);
      if (!old || old.content !== m.content || old.editedAt !== m.editedAt || old.deletedAt !== m.deletedAt) upsert(room, m);
    }
  } catch {
    /* the socket's replay has the new messages; this was only a refresh */
  }
}

async function loadOlder(room) {
  if (!room.hasOlder || room.loadingOlder || room.oldest == null) return;
  room.loadingOlder = true;
  const scroller = $("#messages-scroll");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  try {
    const page = await api.call("GET", `/rooms/${room.id}/messages?before=${room.oldest}&limit=${PAGE}`);
    room.hasOlder = page.hasMore;
    if (page.messages.length) room.oldest = page.messages[0].seq;
    for (const m of page.messages) {
      ensureUser(m.senderId);
      upsert(room, m);
    }
    renderHistoryEdge(room);
    // Keep the messages that were on screen where they were.
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  } catch (e) {
    notice(errText(e));
  } finally {
    room.loadingOlder = false;
  }
}

// ---------------------------------------------------------------------------------------------------
// Opening a room

async function openRoom(id) {
  const room = rooms.get(id);
  if (!room) return;
  current = id;
  view = { roomId: id, els: new Map(), pendingEls: new Map() };
  document.body.classList.add("in-room");
  $("#no-room").hidden = true;
  $("#room").hidden = false;
  $("#members-panel").hidden = true;
  $("#members-toggle").setAttribute("aria-expanded", "false");
  $("#invite-box").hidden = true;
  replace($("#messages"));
  setText($("#typing"), "");
  $("#message-input").value = "";
  renderHeader(room);
  renderRoomList();
  try {
    if (!room.loaded) await loadLatest(room);
  } catch (e) {
    notice(errText(e));
  }
  if (current !== id) return;
  for (const m of [...room.messages.values()].sort((a, b) => a.seq - b.seq)) renderMessage(room, m);
  for (const p of room.pending.values()) renderPending(room, p);
  renderHistoryEdge(room);
  scrollToBottom();
  loadMembers(room).catch(() => {});
  markReadSoon(room);
  if (room.unread) {
    room.unread = 0;
    renderRoomList();
  }
  $("#message-input").focus();
}

function closeRoom() {
  current = null;
  view = null;
  document.body.classList.remove("in-room");
  $("#room").hidden = true;
  $("#no-room").hidden = false;
  replace($("#messages"));
}

async function loadMembers(room) {
  if (!room) return;
  const list = await api.call("GET", `/rooms/${room.id}/members`);
  room.members = new Map(list.map((m) => [m.userId, m]));
  room.membersLoaded = true;
  room.memberCount = list.length;
  const mine = room.members.get(me().id);
  if (mine) room.role = mine.role;
  for (const m of list) {
    const u = users.get(m.userId) || { id: m.userId };
    u.username = m.username;
    u.online = m.userId === me().id ? true : !!m.online;
    u.lastSeen = m.lastSeen || u.lastSeen || null;
    users.set(m.userId, u);
  }
  if (current === room.id) {
    renderHeader(room);
    renderReceipts(room);
    refreshNames(); // renders the members too
  }
}

// ---------------------------------------------------------------------------------------------------
// Rendering

/**
 * Re-renders `container` with `fn` and puts the keyboard focus back on the element with the same
 * `data-focus` key, so lists that refresh on live events do not steal a keyboard user's place.
 */
function keepFocus(container, fn) {
  const key = container.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  fn();
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

function renderRoomList() {
  keepFocus($("#room-list"), renderRoomListNow);
}

function renderRoomListNow() {
  const list = $("#room-list");
  const sorted = [...rooms.values()].sort((a, b) => activity(b) - activity(a));
  replace(
    list,
    sorted.map((r) => {
      const last = r.lastMessage;
      const preview = !last
        ? "No messages yet"
        : last.deletedAt || last.content == null
          ? "Message deleted"
          : `${last.senderId === me().id ? "You" : userName(last.senderId)}: ${last.content}`;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "room-item",
            "aria-current": r.id === current ? "true" : null,
            dataset: { roomId: r.id, focus: `room:${r.id}` },
            onclick: () => openRoom(r.id),
          },
          h(
            "span",
            { class: "room-line" },
            h("span", { class: "room-name", text: r.name }),
            r.isPrivate ? h("span", { class: "tag", text: "private" }) : null,
            r.unread > 0
              ? h("span", { class: "unread", "aria-label": `${r.unread} unread`, text: r.unread > 99 ? "99+" : r.unread })
              : null,
          ),
          h("span", { class: "room-last", text: preview }),
        ),
      );
    }),
  );
  $("#rooms-empty").hidden = rooms.size > 0;
}

function activity(r) {
  const t = r.lastMessage?.createdAt || r.joinedAt;
  return t ? new Date(t).getTime() : 0;
}

function renderHeader(room) {
  if (!room || current !== room.id) return;
  setText($("#room-title"), room.name);
  const online = room.membersLoaded
    ? [...room.members.keys()].filter((id) => users.get(id)?.online).length
    : null;
  const parts = [
    room.isPrivate ? "Private" : "Public",
    `${room.memberCount} member${room.memberCount === 1 ? "" : "s"}`,
    online != null ? `${online} online` : null,
    room.role === "admin" ? "you are an admin" : null,
  ].filter(Boolean);
  setText($("#room-meta"), parts.join(" · "));
  $("#copy-invite").hidden = !room.inviteCode;
  $("#rotate-invite").hidden = room.role !== "admin";
  if (!$("#invite-box").hidden) showInviteLink(room, false);
}

function renderMembers(room) {
  if (!room || current !== room.id) return;
  keepFocus($("#member-list"), () => renderMembersNow(room));
}

function renderMembersNow(room) {
  const admin = room.role === "admin";
  const list = [...room.members.values()].sort((a, b) => a.username.localeCompare(b.username));
  replace(
    $("#member-list"),
    list.map((m) => {
      const u = users.get(m.userId) || {};
      const isMe = m.userId === me().id;
      const online = isMe || !!u.online;
      return h(
        "li",
        { class: "member", dataset: { userId: m.userId } },
        h("span", { class: `dot ${online ? "online" : "offline"}`, "aria-hidden": "true" }),
        h(
          "span",
          { class: "member-text" },
          h("span", { class: "member-name", text: isMe ? `${m.username} (you)` : m.username }),
          m.role === "admin" ? h("span", { class: "tag", text: "admin" }) : null,
          h("span", {
            class: "presence",
            text: online ? "online" : `last seen ${ago(u.lastSeen || m.lastSeen)}`,
          }),
        ),
        admin && !isMe
          ? h(
              "span",
              { class: "member-actions" },
              h("button", {
                type: "button",
                class: "small",
                dataset: { focus: `role:${m.userId}` },
                text: m.role === "admin" ? "Make member" : "Make admin",
                "aria-label": `${m.role === "admin" ? "Make member" : "Make admin"}: ${m.username}`,
                onclick: () => setRole(room, m, m.role === "admin" ? "member" : "admin"),
              }),
              h("button", {
                type: "button",
                class: "small danger",
                dataset: { focus: `kick:${m.userId}` },
                text: "Remove",
                "aria-label": `Remove ${m.username} from the room`,
                onclick: () => kick(room, m),
              }),
            )
          : null,
      );
    }),
  );
}

function renderTyping(room) {
  if (!room || current !== room.id) return;
  const names = [...room.typing.keys()].map(userName);
  const el = $("#typing");
  if (!names.length) setText(el, "");
  else if (names.length === 1) setText(el, `${names[0]} is typing…`);
  else setText(el, `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`);
}

function renderHistoryEdge(room) {
  if (current !== room.id) return;
  $("#load-older").hidden = !room.hasOlder;
  $("#history-start").hidden = room.hasOlder || !room.loaded;
}

/** Stores a message and shows it when its room is open. */
function upsert(room, m) {
  const old = room.messages.get(m.seq);
  room.messages.set(m.seq, old ? { ...old, ...m } : m);
  if (current === room.id && view && room.loaded) renderMessage(room, room.messages.get(m.seq));
}

function renderMessage(room, m) {
  const list = $("#messages");
  const stick = nearBottom() || m.senderId === me().id;
  const mine = m.senderId === me().id;
  const deleted = !!m.deletedAt || m.content == null;
  const li = h(
    "li",
    {
      class: `msg${mine ? " mine" : ""}${deleted ? " deleted" : ""}`,
      dataset: { seq: m.seq, id: m.id },
    },
    h(
      "div",
      { class: "msg-head" },
      h("span", { class: "author", text: mine ? "You" : userName(m.senderId) }),
      h("time", { class: "time", datetime: m.createdAt, text: formatTime(m.createdAt) }),
      m.editedAt && !deleted ? h("span", { class: "edited", text: "(edited)" }) : null,
    ),
    deleted
      ? h("p", { class: "content gone", text: "This message was deleted." })
      : h("p", { class: "content", text: m.content }),
    h(
      "div",
      { class: "msg-foot" },
      mine && !deleted ? h("span", { class: "status" }) : null,
      mine && !deleted ? h("span", { class: "seen-by" }) : null,
      !deleted && mine
        ? h("button", { type: "button", class: "small quiet", text: "Edit", "aria-label": "Edit message", onclick: () => startEdit(room, m.seq) })
        : null,
      !deleted && (mine || room.role === "admin")
        ? h("button", { type: "button", class: "small quiet", text: "Delete", "aria-label": "Delete message", onclick: () => del(room, m) })
        : null,
    ),
  );
  const old = view.els.get(m.seq);
  if (old) old.replaceWith(li);
  else {
    // In seq order; pending (unsent) messages stay at the end.
    let before = null;
    for (const el of list.children) {
      if (el.classList.contains("pending") || Number(el.dataset.seq) > m.seq) {
        before = el;
        break;
      }
    }
    list.insertBefore(li, before);
  }
  view.els.set(m.seq, li);
  if (mine) renderReceipts(room);
  if (!old && stick) scrollToBottom();
}

/** Delivered ticks and "Seen by" on my messages, from the other members' cursors. */
function renderReceipts(room) {
  if (current !== room.id || !view) return;
  const others = [...room.members.values()].filter((m) => m.userId !== me().id);
  const mineSeqs = [...view.els.keys()].filter((s) => room.messages.get(s)?.senderId === me().id).sort((a, b) => a - b);
  // Each reader is shown under the last of my messages they have read.
  const seenAt = new Map();
  for (const o of others) {
    let at = null;
    for (const s of mineSeqs) if (s <= (o.readSeq || 0)) at = s;
    if (at != null) seenAt.set(at, [...(seenAt.get(at) || []), o.username]);
  }
  for (const s of mineSeqs) {
    const li = view.els.get(s);
    const status = li.querySelector(".status");
    const seenBy = li.querySelector(".seen-by");
    if (!status) continue;
    const read = others.filter((o) => (o.readSeq || 0) >= s).length;
    const delivered = others.filter((o) => Math.max(o.deliveredSeq || 0, o.readSeq || 0) >= s).length;
    const [state, text, label] = read
      ? ["seen", "✓✓", "seen"]
      : delivered
        ? ["delivered", "✓✓", "delivered"]
        : ["sent", "✓", "sent"];
    status.dataset.status = state;
    setText(status, text);
    status.setAttribute("aria-label", label);
    status.title = label;
    const names = seenAt.get(s);
    setText(seenBy, names ? `Seen by ${names.sort().join(", ")}` : "");
  }
}

function renderPending(room, p) {
  if (current !== room.id || !view) return;
  const label = {
    sending: "Sending…",
    queued: rt?.connected ? "Queued…" : "Waiting for the connection…",
    waiting: p.error || "Waiting…",
    failed: p.error || "Not sent.",
  }[p.status];
  const li = h(
    "li",
    { class: `msg mine pending ${p.status}`, dataset: { clientMsgId: p.clientMsgId } },
    h("div", { class: "msg-head" }, h("span", { class: "author", text: "You" })),
    h("p", { class: "content", text: p.content }),
    h(
      "div",
      { class: "msg-foot" },
      h("span", { class: "status", dataset: { status: p.status }, text: label }),
      p.status === "failed"
        ? [
            h("button", { type: "button", class: "small", text: "Retry", onclick: () => retry(room, p) }),
            h("button", { type: "button", class: "small quiet", text: "Discard", onclick: () => settlePending(room, p.clientMsgId) }),
          ]
        : null,
    ),
  );
  const old = view.pendingEls.get(p.clientMsgId);
  if (old) old.replaceWith(li);
  else {
    $("#messages").append(li);
    scrollToBottom();
  }
  view.pendingEls.set(p.clientMsgId, li);
}

function nearBottom() {
  const s = $("#messages-scroll");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = $("#messages-scroll");
  s.scrollTop = s.scrollHeight;
}

// ---------------------------------------------------------------------------------------------------
// Sending, editing, deleting

function sendMessage(room, content) {
  const p = { clientMsgId: randomId(), roomId: room.id, content, status: "queued", error: null };
  room.pending.set(p.clientMsgId, p);
  renderPending(room, p);
  pump(room);
}

/**
 * Sends a room's unsent messages one at a time, in the order they were written, so a message held back
 * (rate limited, connection lost) is never overtaken by a later one. Each keeps its clientMsgId across
 * retries, so the server never stores one twice. Runs until the outbox is empty or the socket is down
 * (a reconnect calls it again).
 */
async function pump(room) {
  if (room.pumping) return;
  room.pumping = true;
  try {
    for (;;) {
      if (!rooms.has(room.id)) return;
      const p = [...room.pending.values()].find((x) => x.status !== "failed");
      if (!p) return;
      if (!rt?.connected) {
        for (const x of room.pending.values()) if (x.status !== "failed" && x.status !== "queued") setStatus(room, x, "queued");
        return;
      }
      setStatus(room, p, "sending");
      const a = await rt.request("send_message", { roomId: p.roomId, content: p.content, clientMsgId: p.clientMsgId });
      if (!room.pending.has(p.clientMsgId)) continue; // discarded meanwhile
      if (a.ok) {
        settlePending(room, p.clientMsgId);
        onMessage(room, a.message);
        continue;
      }
      const code = a.error?.code;
      if (code === "RATE_LIMITED") {
        const ms = a.error.retryAfterMs ?? (a.error.retryAfter ?? 1) * 1000;
        p.error = ackText(a, "You are sending messages too fast");
        notice(p.error);
        setStatus(room, p, "waiting");
        await sleep(ms + 50);
      } else if (code === "OFFLINE" || code === "TIMEOUT" || code === "UNAVAILABLE") {
        setStatus(room, p, "queued");
        if (!rt?.connected) return;
        await sleep(1500);
      } else {
        p.error = ackText(a);
        notice(p.error);
        setStatus(room, p, "failed");
      }
    }
  } finally {
    room.pumping = false;
  }
}

function setStatus(room, p, status) {
  p.status = status;
  renderPending(room, p);
}

function retry(room, p) {
  p.error = null;
  setStatus(room, p, "queued");
  pump(room);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function settlePending(room, clientMsgId) {
  room.pending.delete(clientMsgId);
  const li = view?.pendingEls.get(clientMsgId);
  if (li && current === room.id) {
    li.remove();
    view.pendingEls.delete(clientMsgId);
  }
}

function flushOutbox() {
  for (const room of rooms.values()) if (room.pending.size) pump(room);
}

function startEdit(room, seq) {
  const m = room.messages.get(seq);
  const li = view?.els.get(seq);
  if (!m || !li || m.content == null) return;
  const content = li.querySelector(".content");
  const input = h("input", { class: "edit-input", value: m.content, "aria-label": "Edit message", maxlength: 4000 });
  const form = h(
    "form",
    {
      class: "edit-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const text = input.value;
        if (!text.trim() || text === m.content) return cancel();
        const a = await rt.request("edit_message", { messageId: m.id, content: text });
        if (!a.ok) return notice(ackText(a));
        onEdited(room, a.message);
      },
    },
    input,
    h("button", { type: "submit", class: "small", text: "Save" }),
    h("button", { type: "button", class: "small quiet", text: "Cancel", onclick: () => cancel() }),
  );
  const cancel = () => renderMessage(room, room.messages.get(seq));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") cancel();
  });
  content.replaceWith(form);
  input.focus();
  input.select();
}

async function del(room, m) {
  const a = await rt.request("delete_message", { messageId: m.id });
  if (!a.ok) return notice(ackText(a));
  onDeleted(room, { ...a.message, seq: a.message.seq ?? m.seq });
}

// ---------------------------------------------------------------------------------------------------
// Admin actions, invites, leaving

async function setRole(room, m, role) {
  try {
    await api.call("PATCH", `/rooms/${room.id}/members/${m.userId}`, { role });
    notice(`${m.username} is now ${role === "admin" ? "an admin" : "a member"}.`, "info");
    await loadMembers(room);
  } catch (e) {
    notice(errText(e));
  }
}

async function kick(room, m) {
  try {
    await api.call("DELETE", `/rooms/${room.id}/members/${m.userId}`);
    notice(`${m.username} was removed from the room.`, "info");
    await loadMembers(room);
  } catch (e) {
    notice(errText(e));
  }
}

function inviteLink(room) {
  return `${window.location.origin}/invite/${encodeURIComponent(room.inviteCode)}`;
}

async function showInviteLink(room, copy) {
  if (!room.inviteCode) return;
  const box = $("#invite-box");
  const input = $("#invite-link");
  input.value = inviteLink(room);
  box.hidden = false;
  if (!copy) return;
  input.focus();
  input.select();
  let copied = false;
  try {
    await navigator.clipboard.writeText(input.value);
    copied = true;
  } catch {
    copied = false;
  }
  setText($("#invite-copied"), copied ? "Copied to the clipboard." : "Select the link and copy it.");
}

async function rotateInvite(room) {
  try {
    const r = await api.call("POST", `/rooms/${room.id}/invite`);
    room.inviteCode = r.inviteCode;
    showInviteLink(room, false);
    setText($("#invite-copied"), "New link created: the old one no longer works.");
    notice("New invite link created; the old one no longer works.", "info");
  } catch (e) {
    notice(errText(e));
  }
}

async function leave(room) {
  try {
    await api.call("POST", `/rooms/${room.id}/leave`);
    await rt?.request("leave_room", { roomId: room.id });
    dropRoom(room.id, "You left “{room}”.");
  } catch (e) {
    notice(errText(e));
  }
}

/** An invite link opened (now or before logging in): say where it leads and offer to join. */
async function showInvite() {
  const code = sessionStorage.getItem(INVITE_KEY);
  const panel = $("#invite-panel");
  if (!code) {
    panel.hidden = true;
    return;
  }
  try {
    const v = await api.call("GET", `/invites/${encodeURIComponent(code)}`);
    if (v.myRole) {
      sessionStorage.removeItem(INVITE_KEY);
      if (!rooms.has(v.id)) await addRoom({ ...v, role: v.myRole });
      else await openRoom(v.id);
      return;
    }
    setText(
      $("#invite-text"),
      `Join “${v.name}”? ${v.isPrivate ? "Private room" : "Public room"}, ${v.memberCount} member${v.memberCount === 1 ? "" : "s"}.`,
    );
    panel.hidden = false;
    panel.dataset.code = code;
    $("#invite-accept").focus();
  } catch (e) {
    sessionStorage.removeItem(INVITE_KEY);
    panel.hidden = true;
    notice(e.code === "NOT_FOUND" ? "That invite link is not valid (any more): ask for a new one." : errText(e));
  }
}

async function joinByCode(code) {
  const r = await api.call("POST", "/rooms/join", { inviteCode: code });
  sessionStorage.removeItem(INVITE_KEY);
  $("#invite-panel").hidden = true;
  await addRoom({ ...r.room, role: r.room.myRole });
}

// ---------------------------------------------------------------------------------------------------
// Forms and controls

function bindAuth() {
  const login = $("#login-form");
  login.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError(login, "");
    const data = new FormData(login);
    if (!data.get("login") || !data.get("password")) return formError(login, "Enter your username (or e-mail) and password.");
    await busy(login, async () => {
      try {
        api.begin(await api.raw("POST", "/auth/login", { login: data.get("login"), password: data.get("password") }, false));
        login.reset();
        enter();
      } catch (err) {
        formError(login, errText(err));
      }
    });
  });
  const reg = $("#register-form");
  reg.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError(reg, "");
    const data = new FormData(reg);
    await busy(reg, async () => {
      try {
        const body = {
          username: String(data.get("username") || "").trim(),
          email: String(data.get("email") || "").trim(),
          password: String(data.get("password") || ""),
        };
        api.begin(await api.raw("POST", "/auth/register", body, false));
        reg.reset();
        enter();
      } catch (err) {
        formError(reg, errText(err));
      }
    });
  });
  $("#logout").addEventListener("click", async () => {
    // The socket first: the gateway drops it when the token is revoked, which must not look like an
    // expired token to refresh.
    rt?.stop();
    try {
      await api.logout();
    } catch {
      /* signed out locally either way */
    }
    signedOut("You are signed out.");
  });
}

async function busy(form, fn) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await fn();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function bindChat() {
  const create = $("#create-room-form");
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError(create, "");
    const name = $("#room-name").value.trim();
    if (!name) return formError(create, "Give the room a name.");
    await busy(create, async () => {
      try {
        const r = await api.call("POST", "/rooms", { name, isPrivate: $("#room-private").checked });
        create.reset();
        create.closest("details").open = false;
        const room = await addRoom({ ...r, role: "admin" });
        if (room.isPrivate) showInviteLink(room, false);
      } catch (err) {
        formError(create, errText(err));
      }
    });
  });

  const join = $("#join-invite-form");
  join.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError(join, "");
    const raw = $("#invite-input").value.trim();
    const code = raw.includes("/invite/") ? safeDecode(raw.split("/invite/").pop().split(/[?#/]/)[0]) : raw;
    if (!code) return formError(join, "Paste an invite link or code.");
    await busy(join, async () => {
      try {
        await joinByCode(code);
        join.reset();
        join.closest("details").open = false;
      } catch (err) {
        formError(join, err.code === "NOT_FOUND" ? "That invite is not valid (any more): ask for a new one." : errText(err));
      }
    });
  });

  const discover = $("#discover-form");
  discover.addEventListener("submit", (e) => {
    e.preventDefault();
    runDiscover();
  });

  $("#invite-accept").addEventListener("click", async () => {
    const code = $("#invite-panel").dataset.code;
    try {
      await joinByCode(code);
    } catch (err) {
      notice(err.code === "NOT_FOUND" ? "That invite link is not valid (any more): ask for a new one." : errText(err));
      sessionStorage.removeItem(INVITE_KEY);
      $("#invite-panel").hidden = true;
    }
  });
  $("#invite-dismiss").addEventListener("click", () => {
    sessionStorage.removeItem(INVITE_KEY);
    $("#invite-panel").hidden = true;
  });

  $("#back").addEventListener("click", () => {
    closeRoom();
    renderRoomList();
    $(`#room-list .room-item`)?.focus();
  });
  $("#copy-invite").addEventListener("click", () => current && showInviteLink(rooms.get(current), true));
  $("#rotate-invite").addEventListener("click", () => current && rotateInvite(rooms.get(current)));
  $("#leave-room").addEventListener("click", () => current && leave(rooms.get(current)));
  $("#members-toggle").addEventListener("click", () => {
    const panel = $("#members-panel");
    panel.hidden = !panel.hidden;
    $("#members-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden && current) loadMembers(rooms.get(current)).catch((e) => notice(errText(e)));
  });
  $("#load-older").addEventListener("click", () => current && loadOlder(rooms.get(current)));
  $("#messages-scroll").addEventListener("scroll", (e) => {
    if (current && e.target.scrollTop < 40) loadOlder(rooms.get(current));
  });

  const composer = $("#composer");
  const input = $("#message-input");
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const room = current && rooms.get(current);
    const content = input.value;
    if (!room || !content.trim()) return;
    input.value = "";
    stopTyping(room);
    sendMessage(room, content);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    const room = current && rooms.get(current);
    if (room && input.value.trim()) typingNow(room);
    else if (room) stopTyping(room);
  });
  document.addEventListener("visibilitychange", () => {
    if (current) markReadSoon(rooms.get(current));
  });
  window.addEventListener("focus", () => current && markReadSoon(rooms.get(current)));
}

async function runDiscover() {
  const section = $("#discover-title").closest("section");
  const q = $("#discover-q").value.trim();
  setText(section.querySelector(".form-error"), "");
  try {
    const page = await api.call("GET", `/rooms/discover?limit=20${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    replace(
      $("#discover-list"),
      page.rooms.length
        ? page.rooms.map((r) =>
            h(
              "li",
              { class: "discover-item" },
              h("span", { class: "room-name", text: r.name }),
              h("span", { class: "meta", text: `${r.memberCount} member${r.memberCount === 1 ? "" : "s"}` }),
              rooms.has(r.id)
                ? h("button", { type: "button", class: "small quiet", text: "Open", onclick: () => openRoom(r.id) })
                : h("button", {
                    type: "button",
                    class: "small",
                    text: "Join",
                    "aria-label": `Join ${r.name}`,
                    onclick: async () => {
                      try {
                        const j = await api.call("POST", `/rooms/${r.id}/join`);
                        await addRoom({ ...j.room, role: j.room.myRole }); // refreshes discovery too
                      } catch (err) {
                        notice(errText(err));
                      }
                    },
                  }),
            ),
          )
        : h("li", { class: "hint", text: q ? "No public room matches." : "No public rooms yet." }),
    );
  } catch (e) {
    setText(section.querySelector(".form-error"), errText(e));
  }
}

// Typing: say so when the first key is pressed, again every couple of seconds while typing goes on,
// and stop after a pause or when the message is sent.
function typingNow(room) {
  const now = Date.now();
  if (room.typingRoom !== room.id || now - (room.typingSentAt || 0) > TYPING_REFRESH_MS) {
    rt?.emit("typing", { roomId: room.id, isTyping: true });
    room.typingSentAt = now;
    room.typingRoom = room.id;
  }
  clearTimeout(room.typingStop);
  room.typingStop = setTimeout(() => stopTyping(room), TYPING_IDLE_MS);
}

function stopTyping(room) {
  clearTimeout(room.typingStop);
  if (room.typingRoom) {
    rt?.emit("typing", { roomId: room.id, isTyping: false });
    room.typingRoom = null;
    room.typingSentAt = 0;
  }
}

main();
