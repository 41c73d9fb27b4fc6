// The web client end to end in a real browser: Debian's Chromium driven by playwright-core, against the
// real API (serving web/dist), two gateways, the worker, MariaDB and Redis (see stack.mjs).
//
// Alice (desktop width, on gateway 0) and Bob (phone width, on gateway 1 through a proxy the test can
// cut) register, make a private room and join it by invite link, chat both ways, see typing, delivery
// and read receipts, unread counts, edit and delete, page through history, discover a public room, and
// Bob recovers the messages he missed while his connection was cut. A message that looks like HTML is
// shown as text. Screenshots of the main screens go to target/test-artifacts/web/.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, sleep, startStack } from "./stack.mjs";

const ARTIFACTS = process.env.WEB_E2E_ARTIFACTS || path.join(ROOT, "target/test-artifacts/web");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const T = 8000; // default wait for something to appear
const rand = () => Math.random().toString(36).slice(2, 8);

let stack;
let browser;
const ctx = {};
const problems = []; // page errors and dialogs: there must be none
let shot = 0;

async function screenshot(page, name) {
  shot++;
  const file = path.join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
}

async function newUser(name, { viewport, gateway }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  // Each person's page talks to one gateway (both are in the page's Content-Security-Policy).
  await context.route("**/config.json", (route) =>
    route.fulfill({ json: { apiBase: "/api/v1", gatewayUrls: [gateway] } }),
  );
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("dialog", async (d) => {
    problems.push(`${name}: dialog ${d.type()}: ${d.message()}`);
    await d.dismiss();
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource|WebSocket connection/.test(m.text())) {
      problems.push(`${name}: console error: ${m.text()}`);
    }
  });
  const username = `${name}_${rand()}`;
  return { context, page, username, name };
}

async function register(u, { badPasswordFirst = false } = {}) {
  const { page } = u;
  const form = page.locator("#register-form");
  await form.locator("#reg-username").fill(u.username);
  await form.locator("#reg-email").fill(`${u.username}@example.com`);
  if (badPasswordFirst) {
    await form.locator("#reg-password").fill("short");
    await form.getByRole("button", { name: "Create account" }).click();
    // Validation errors come back in plain words, next to the form.
    await form.locator(".form-error", { hasText: "Please check: password" }).waitFor({ timeout: T });
  }
  await form.locator("#reg-password").fill("correct horse battery");
  await form.locator("#reg-password").press("Enter"); // the keyboard submits the form
  await page.locator("#chat-view").waitFor({ state: "visible", timeout: T });
  await connState(page, "live");
}

/** Waits until the page's connection indicator says `state`. */
async function connState(page, state, timeout = T) {
  await page.waitForFunction((s) => document.querySelector("#conn")?.dataset.state === s, state, { timeout, polling: 50 });
}

const messages = (page) => page.locator("#messages li.msg:not(.pending)");
const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
/** The message whose text is exactly `text`. */
const message = (page, text) => page.locator("#messages li.msg").filter({ has: page.locator(".content", { hasText: exactly(text) }) });

async function send(page, text) {
  const input = page.locator("#message-input");
  await input.fill(text);
  await input.press("Enter");
  await message(page, text).locator(".status:not([data-status=sending]):not([data-status=queued])").first().waitFor({ timeout: T });
}

async function contents(page) {
  return messages(page).locator(".content").allTextContents();
}

async function openRoom(page, name) {
  const back = page.locator("#back");
  if (await back.isVisible()) await back.click(); // phone width: back to the room list first
  await page.locator("#room-list .room-item", { has: page.locator(".room-name", { hasText: name }) }).click();
  await page.locator("#room-title", { hasText: name }).waitFor({ timeout: T });
}

async function token(page) {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem("chat.session")).accessToken);
}

before(async () => {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  stack = await startStack({ env: { ACCESS_TOKEN_TTL_SECS: "15" } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  ctx.alice = await newUser("alice", { viewport: { width: 1200, height: 800 }, gateway: stack.gateways[0] });
  ctx.bob = await newUser("bob", { viewport: { width: 390, height: 800 }, gateway: stack.gateways[1] });
}, { timeout: 120000 });

after(async () => {
  await browser?.close();
  await stack?.stop();
}, { timeout: 60000 });

function step(name, fn) {
  test(name, { timeout: 45000 }, async () => {
    try {
      await fn();
    } catch (e) {
      if (stack) stack.failed = true;
      for (const u of [ctx.alice, ctx.bob]) {
        if (u) await screenshot(u.page, `FAILED-${u.name}`).catch(() => {});
      }
      throw e;
    }
  });
}

step("the API serves the client, its settings, and JSON 404s for unknown paths", async () => {
  const page = await fetch(`${stack.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /text\/html/);
  const csp = page.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'/);
  assert.ok(csp.includes(stack.gateways[0].replace("http", "ws")), csp);
  const invite = await fetch(`${stack.url}/invite/whatever`);
  assert.equal(invite.status, 200);
  assert.match(await invite.text(), /<script type="module" src="\/assets\/app.js">/);
  const cfg = await (await fetch(`${stack.url}/config.json`)).json();
  assert.deepEqual(cfg.gatewayUrls, stack.gateways);
  const js = await fetch(`${stack.url}/assets/app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type"), /javascript/);
  for (const p of ["/nope", "/api/v1/nope", "/assets/nope.js"]) {
    const r = await fetch(`${stack.url}${p}`);
    assert.equal(r.status, 404, p);
    assert.equal((await r.json()).error.code, "NOT_FOUND", p);
  }
  const health = await fetch(`${stack.url}/health`);
  assert.equal((await health.json()).status, "ok");
});

step("Alice registers and creates a private room with an invite link", async () => {
  const { page } = ctx.alice;
  await page.goto(stack.url);
  await page.locator("#auth-view").waitFor({ timeout: T });
  await screenshot(page, "sign-in");
  await register(ctx.alice);
  ctx.alice.firstToken = await token(page);
  await page.locator("summary", { hasText: "New room" }).click();
  await page.locator("#room-name").fill("Secret plans");
  await page.getByLabel("Private (invite only)").check();
  await page.getByRole("button", { name: "Create room" }).click();
  await page.locator("#room-title", { hasText: "Secret plans" }).waitFor({ timeout: T });
  await page.locator("#copy-invite").click();
  const link = await page.locator("#invite-link").inputValue();
  assert.match(link, new RegExp(`^${stack.url}/invite/[A-Za-z0-9_-]+$`));
  ctx.invite = link;
  await screenshot(page, "private-room-invite");
});

step("Bob opens the invite link, registers (after a plain-words validation error) and joins", async () => {
  const { page } = ctx.bob;
  await page.goto(ctx.invite);
  await page.locator("#invite-hint").waitFor({ timeout: T });
  await register(ctx.bob, { badPasswordFirst: true });
  const panel = page.locator("#invite-panel");
  await panel.locator("#invite-text", { hasText: "Secret plans" }).waitFor({ timeout: T });
  await screenshot(page, "invite-phone");
  await panel.getByRole("button", { name: "Join room" }).click();
  await page.locator("#room-title", { hasText: "Secret plans" }).waitFor({ timeout: T });
  // Alice sees Bob arrive, online.
  await ctx.alice.page.locator("#members-toggle").click();
  const bobRow = ctx.alice.page.locator("#member-list .member", { hasText: ctx.bob.username });
  await bobRow.locator(".dot.online").waitFor({ timeout: T });
  await ctx.alice.page.locator("#members-toggle").click();
});

step("they chat both ways, with typing and read receipts", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  await send(a, "Hello Bob");
  await message(b, "Hello Bob").waitFor({ timeout: T });
  // Bob has the room open: Alice sees her message seen by him.
  await message(a, "Hello Bob").locator(".status[data-status=seen]").waitFor({ timeout: T });
  await message(a, "Hello Bob").locator(".seen-by", { hasText: `Seen by ${ctx.bob.username}` }).waitFor({ timeout: T });

  // Bob types: Alice sees it; he sends: it stops.
  await b.locator("#message-input").pressSequentially("Hi Ali", { delay: 30 });
  await a.locator("#typing", { hasText: `${ctx.bob.username} is typing` }).waitFor({ timeout: T });
  await screenshot(a, "typing");
  await b.locator("#message-input").pressSequentially("ce!", { delay: 30 });
  await b.locator("#message-input").press("Enter");
  await message(a, "Hi Alice!").waitFor({ timeout: T });
  await a.waitForFunction(() => document.querySelector("#typing").textContent === "", null, { timeout: T });
  await message(b, "Hi Alice!").locator(".seen-by", { hasText: `Seen by ${ctx.alice.username}` }).waitFor({ timeout: T });
  assert.deepEqual(await contents(a), ["Hello Bob", "Hi Alice!"]);
  assert.deepEqual(await contents(b), ["Hello Bob", "Hi Alice!"]);
  await screenshot(b, "chat-phone");
});

step("Bob makes a public room with history; Alice discovers it and pages upward", async () => {
  const b = ctx.bob.page;
  await b.locator("#back").click();
  await b.locator("summary", { hasText: "New room" }).click();
  await b.locator("#room-name").fill("Lobby");
  await b.locator("#room-name").press("Enter");
  await b.locator("#room-title", { hasText: "Lobby" }).waitFor({ timeout: T });
  const roomId = await b.locator("#room-list .room-item[aria-current=true]").getAttribute("data-room-id");
  // 35 messages of history, sent over REST (the same path as the socket's send_message).
  const bearer = await token(b);
  for (let i = 1; i <= 35; i++) {
    const r = await fetch(`${stack.url}/api/v1/rooms/${roomId}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify({ content: `history ${i}`, clientMsgId: `h-${i}` }),
    });
    if (r.status === 429) {
      await sleep((await r.json()).error.retryAfterMs + 20); // MESSAGE_RATE_LIMIT: wait, send it again
      i--;
      continue;
    }
    assert.equal(r.status, 201, await r.text());
  }
  await message(b, "history 35").waitFor({ timeout: T });

  const a = ctx.alice.page;
  await a.locator("#discover-q").fill("lob");
  await a.locator("#discover-q").press("Enter");
  const item = a.locator("#discover-list .discover-item", { hasText: "Lobby" });
  await item.getByRole("button", { name: "Join Lobby" }).click();
  await a.locator("#room-title", { hasText: "Lobby" }).waitFor({ timeout: T });
  await message(a, "history 35").waitFor({ timeout: T });
  assert.equal(await messages(a).count(), 30, "one page of history");
  assert.equal((await contents(a))[0], "history 6");
  await a.locator("#load-older").waitFor({ timeout: T });
  // Scrolling to the top pages upward (the button does the same for keyboard users).
  await a.locator("#messages-scroll").evaluate((el) => el.scrollTo(0, 0));
  await message(a, "history 1").waitFor({ timeout: T });
  await a.locator("#history-start").waitFor({ timeout: T });
  const all = await contents(a);
  assert.deepEqual(all, Array.from({ length: 35 }, (_, i) => `history ${i + 1}`));
  await screenshot(a, "history-paged");
});

step("unread counts, last message and delivered ticks while Bob looks elsewhere", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  // Bob is in the Lobby; Alice writes in Secret plans.
  await openRoom(a, "Secret plans");
  await send(a, "Are you there?");
  await message(a, "Are you there?").locator(".status[data-status=delivered]").waitFor({ timeout: T });
  await b.locator("#back").click();
  const secret = b.locator("#room-list .room-item", { has: b.locator(".room-name", { hasText: "Secret plans" }) });
  await secret.locator(".unread", { hasText: "1" }).waitFor({ timeout: T });
  await secret.locator(".room-last", { hasText: "Are you there?" }).waitFor({ timeout: T });
  await screenshot(b, "room-list-unread-phone");
  await secret.click();
  await message(a, "Are you there?").locator(".status[data-status=seen]").waitFor({ timeout: T });
  await b.locator("#back").click();
  await secret.locator(".unread").waitFor({ state: "detached", timeout: T });
  await secret.click();
});

step("edit and delete reach the other side", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  const seq = await message(a, "Are you there?").getAttribute("data-seq");
  const mine = a.locator(`#messages li.msg[data-seq="${seq}"]`);
  await mine.getByRole("button", { name: "Edit message" }).click();
  const input = mine.locator("input.edit-input");
  await input.fill("Are you there, Bob?");
  await input.press("Enter");
  await message(b, "Are you there, Bob?").locator(".edited").waitFor({ timeout: T });
  await send(a, "oops, wrong room");
  await message(b, "oops, wrong room").waitFor({ timeout: T });
  await message(a, "oops, wrong room").getByRole("button", { name: "Delete message" }).click();
  await b.locator("#messages li.msg.deleted .content", { hasText: "This message was deleted." }).waitFor({ timeout: T });
  assert.equal(await message(b, "oops, wrong room").count(), 0);
  await screenshot(b, "edited-deleted-phone");
});

step("a message that looks like HTML is shown as text", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  const evil = "<img src=x onerror=alert(1)>";
  await send(a, evil);
  const got = b.locator("#messages li.msg .content").getByText(evil, { exact: true });
  await got.waitFor({ timeout: T });
  assert.equal(await got.textContent(), evil);
  await sleep(300);
  for (const p of [a, b]) {
    assert.equal(await p.locator("img").count(), 0, "no <img> element was created");
    assert.equal(await p.evaluate(() => document.querySelectorAll("#messages *:not(li,div,span,p,time,button,form,input)").length), 0);
  }
  await b.locator("#back").click();
  await b.locator("#room-list .room-last", { hasText: evil }).waitFor({ timeout: T });
  await b.locator("#room-list .room-item", { has: b.locator(".room-name", { hasText: "Secret plans" }) }).click();
  assert.deepEqual(problems, [], "no dialog, no page error");
});

step("Bob's connection is cut: reconnecting, then recovered with the missed messages", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  const before = await contents(b);
  stack.cut.refuse(true);
  stack.cut.cut();
  await connState(b, "reconnecting");
  await screenshot(b, "reconnecting-phone");
  await send(a, "missed one");
  await send(a, "missed two");
  // Bob writes while cut off: it waits, then goes out with the same clientMsgId once he is back.
  await b.locator("#message-input").fill("written while offline");
  await b.locator("#message-input").press("Enter");
  await message(b, "written while offline").locator(".status[data-status=queued]").waitFor({ timeout: T });
  await sleep(500);
  stack.cut.refuse(false);
  await connState(b, "recovered", 15000);
  await message(b, "missed two").waitFor({ timeout: T });
  await screenshot(b, "recovered-phone");
  assert.deepEqual(await contents(b), [...before, "missed one", "missed two"].concat(
    (await contents(b)).includes("written while offline") ? ["written while offline"] : [],
  ));
  await message(a, "written while offline").waitFor({ timeout: T });
  await message(b, "written while offline").locator(".status[data-status=seen]").waitFor({ timeout: T });
  const finalA = await contents(a);
  const finalB = await contents(b);
  assert.deepEqual(finalB, finalA, "both see the same conversation, in order, once each");
  assert.equal(finalA.filter((c) => c === "written while offline").length, 1);
});

step("a reconnect the gateways cannot recover refills the room by seq", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  stack.cut.refuse(true);
  stack.cut.cut();
  await connState(b, "reconnecting");
  await sleep(500); // the gateway has saved the session by now: forget it, as if the window had passed
  await stack.forgetSessions();
  await send(a, "missed three");
  const edited = message(a, "missed one");
  await edited.getByRole("button", { name: "Edit message" }).click();
  await a.locator("#messages input.edit-input").fill("missed one (edited)");
  await a.locator("#messages input.edit-input").press("Enter");
  await message(a, "missed one (edited)").waitFor({ timeout: T });
  stack.cut.refuse(false);
  // A fresh socket: "live" again (not "recovered"), the rooms joined with sinceSeq.
  await b.waitForFunction(() => ["live", "recovered"].includes(document.querySelector("#conn").dataset.state), null, { timeout: 15000, polling: 50 });
  assert.equal(await b.locator("#conn").getAttribute("data-state"), "live");
  await message(b, "missed three").waitFor({ timeout: T });
  await message(b, "missed one (edited)").waitFor({ timeout: T });
  assert.deepEqual(await contents(b), await contents(a));
});

step("a burst of messages is rate limited, said in plain words, and resent after the wait", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  const burst = Array.from({ length: 15 }, (_, i) => `burst ${i + 1}`);
  // Fifteen messages submitted at once through the composer (as fast as a paste-and-send script).
  await a.evaluate((texts) => {
    const input = document.querySelector("#message-input");
    for (const t of texts) {
      input.value = t;
      document.querySelector("#composer").requestSubmit();
    }
  }, burst);
  // MESSAGE_RATE_LIMIT=12 per 2 s: the rest wait, with the reason on screen, then go out by themselves.
  await a.locator("#notice", { hasText: /You are sending messages too fast: please wait \d+ seconds? and try again\./ }).waitFor({ timeout: T });
  await message(b, "burst 15").waitFor({ timeout: T });
  await a.locator("#messages li.pending").first().waitFor({ state: "detached", timeout: T });
  const got = await contents(b);
  assert.deepEqual(got.slice(-15), burst, "every message once, in order");
  assert.deepEqual(await contents(a), got);
});

step("admin actions: promote, rotate the invite, remove; presence and last seen", async () => {
  const a = ctx.alice.page;
  const b = ctx.bob.page;
  await a.locator("#members-toggle").click();
  const row = a.locator("#member-list .member", { hasText: ctx.bob.username });
  await row.getByRole("button", { name: `Make admin: ${ctx.bob.username}` }).click();
  await row.locator(".tag", { hasText: "admin" }).waitFor({ timeout: T });
  await b.locator("#room-meta", { hasText: "you are an admin" }).waitFor({ timeout: T });
  await row.getByRole("button", { name: `Make member: ${ctx.bob.username}` }).click();
  await b.locator("#room-meta:not(:has-text('you are an admin'))").waitFor({ timeout: T });

  const old = await a.locator("#invite-link").inputValue().catch(() => "");
  await a.getByRole("button", { name: "New invite link" }).click();
  await a.waitForFunction((o) => {
    const v = document.querySelector("#invite-link").value;
    return v && v !== o;
  }, old || ctx.invite, { timeout: T });
  const rotated = await a.locator("#invite-link").inputValue();
  const oldCode = ctx.invite.split("/invite/")[1];
  const r = await fetch(`${stack.url}/api/v1/invites/${oldCode}`, { headers: { authorization: `Bearer ${await token(a)}` } });
  assert.equal(r.status, 404, "the old invite code no longer works");
  assert.notEqual(rotated, ctx.invite);
  await screenshot(a, "members-admin");

  await row.getByRole("button", { name: `Remove ${ctx.bob.username} from the room` }).click();
  await b.locator("#notice", { hasText: "no longer a member of “Secret plans”" }).waitFor({ timeout: T });
  await b.locator("#room-list .room-name", { hasText: "Secret plans" }).waitFor({ state: "detached", timeout: T });
  await row.waitFor({ state: "detached", timeout: T });

  // Bob signs out: in the Lobby, Alice sees him go offline with a last-seen time.
  await openRoom(a, "Lobby");
  await a.locator("#members-toggle").click();
  const inLobby = a.locator("#member-list .member", { hasText: ctx.bob.username });
  await inLobby.locator(".dot.online").waitFor({ timeout: T });
  await b.locator("#logout").click();
  await b.locator("#auth-view").waitFor({ timeout: T });
  await inLobby.locator(".dot.offline").waitFor({ timeout: T });
  await inLobby.locator(".presence", { hasText: "last seen" }).waitFor({ timeout: T });
  await screenshot(a, "presence-last-seen");
});

step("errors in plain words: a wrong password, then the login rate limit with its wait", async () => {
  const b = ctx.bob.page;
  const form = b.locator("#login-form");
  // LOGIN_ATTEMPTS_PER_IP=2 in this stack.
  for (let i = 0; i < 2; i++) {
    await form.locator("#login-name").fill(ctx.bob.username);
    await form.locator("#login-password").fill("not my password");
    await form.getByRole("button", { name: "Log in" }).click();
    await form.locator(".form-error", { hasText: "Wrong username, e-mail or password." }).waitFor({ timeout: T });
    await b.evaluate(() => (document.querySelector("#login-form .form-error").textContent = ""));
  }
  await form.locator("#login-password").fill("correct horse battery");
  await form.getByRole("button", { name: "Log in" }).click();
  await form.locator(".form-error", { hasText: /Too many requests: please wait \d+ seconds? and try again\./ }).waitFor({ timeout: T });
  await screenshot(b, "rate-limited-phone");
});

step("the session was refreshed before its token expired, and nothing went wrong on the pages", async () => {
  const a = ctx.alice.page;
  // ACCESS_TOKEN_TTL_SECS=15: by now the client has exchanged its refresh token at least once.
  await a.waitForFunction((t) => JSON.parse(sessionStorage.getItem("chat.session")).accessToken !== t, ctx.alice.firstToken, { timeout: 20000 });
  const r = await fetch(`${stack.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${await token(a)}` } });
  assert.equal(r.status, 200);
  await connState(a, "live");
  assert.deepEqual(problems, []);
});
