// DOM helpers. Everything the client shows is built with these: text always goes in through
// `textContent` (or a Text node), never through innerHTML, so text from users can never become markup.

/**
 * Creates an element: `h("button", {class: "x", onclick: fn, "aria-label": "…"}, "text", child, …)`.
 * Attributes starting with `on` become listeners; `dataset` takes an object; `hidden`, `disabled`,
 * `checked` are properties; children are nodes or strings (strings become Text nodes); null/false
 * children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "hidden" || k === "disabled" || k === "checked" || k === "value") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces every child of `el` with `children` (same rules as `h`). */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Sets an element's text (the only way user text reaches the page). */
export function setText(el, text) {
  el.textContent = text == null ? "" : String(text);
}

/** "14:05", or "Mon 14:05" / "12 Nov 14:05" for older times. */
export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  if (now - d < 6 * 86400e3) return `${d.toLocaleDateString([], { weekday: "short" })} ${time}`;
  return `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago". */
export function ago(iso) {
  if (!iso) return "a while ago";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return `${d} day${d === 1 ? "" : "s"} ago`;
}

/** A random id for `clientMsgId` (works outside secure contexts, unlike crypto.randomUUID). */
export function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
