// The baseline of the benchmarks: the chat flow the gateway implements, written the way the reference
// Node systems do it — stock socket.io 4 with @socket.io/redis-adapter, every instance over the same
// Redis. Auth by the same HS256 access tokens (same secret), `join_room`, `send_message` →
// `receive_message` to the room, with acks shaped like the gateway's. No persistence, membership or rate
// limit: the baseline does strictly less work per message than the gateway.
//
// Environment: PORT (3100), REDIS_URL (redis://127.0.0.1:6379), REDIS_PREFIX (the adapter's channel
// prefix, default "baseline"), JWT_SECRET (the services' development secret).
import crypto from "node:crypto";
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const PORT = Number(process.env.PORT || 3100);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const PREFIX = process.env.REDIS_PREFIX || "baseline";
const SECRET = process.env.JWT_SECRET || "dev-only-insecure-jwt-secret-change-me-0123456789";

/** The user id of a valid HS256 token, else null. */
export function verify(token, secret = SECRET) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const [head, body, sig] = parts;
  const want = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest();
  const got = Buffer.from(sig, "base64url");
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
  try {
    const h = JSON.parse(Buffer.from(head, "base64url").toString());
    const c = JSON.parse(Buffer.from(body, "base64url").toString());
    if (h.alg !== "HS256" || typeof c.sub !== "string") return null;
    if (typeof c.exp === "number" && c.exp < Date.now() / 1000 - 5) return null;
    return c.sub;
  } catch {
    return null;
  }
}

const fail = (ack, code, message) => typeof ack === "function" && ack({ ok: false, error: { code, message } });

const pub = createClient({ url: REDIS_URL });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/ready" || req.url === "/health" ? 200 : 404).end();
});
const io = new Server(server, {
  adapter: createAdapter(pub, sub, { key: `${PREFIX}:socket.io` }),
  transports: ["websocket", "polling"],
  serveClient: false,
});

io.use((socket, next) => {
  const userId = verify(socket.handshake.auth?.token);
  if (!userId) {
    const err = new Error("invalid or missing token");
    err.data = { code: "UNAUTHORIZED" };
    return next(err);
  }
  socket.data.userId = userId;
  next();
});

let seq = 0;
io.on("connection", (socket) => {
  socket.emit("welcome", { userId: socket.data.userId, message: "welcome", recovered: false, rooms: [] });

  socket.on("join_room", (p, ack) => {
    const roomId = p?.roomId;
    if (typeof roomId !== "string" || !roomId) return fail(ack, "VALIDATION", "roomId is required");
    socket.join(roomId);
    if (typeof ack === "function") ack({ ok: true, roomId, joined: true });
  });

  socket.on("leave_room", (p, ack) => {
    socket.leave(p?.roomId);
    if (typeof ack === "function") ack({ ok: true, roomId: p?.roomId, left: true });
  });

  socket.on("send_message", (p, ack) => {
    const roomId = p?.roomId;
    const content = p?.content;
    if (typeof roomId !== "string" || typeof content !== "string" || !content.trim() || content.length > 4000) {
      return fail(ack, "VALIDATION", "roomId and content (1-4000 characters) are required");
    }
    if (!socket.rooms.has(roomId)) return fail(ack, "FORBIDDEN", "join the room first");
    const message = {
      id: crypto.randomUUID(),
      roomId,
      seq: ++seq,
      senderId: socket.data.userId,
      content,
      type: p.type || "text",
      createdAt: new Date().toISOString(),
      ...(p.clientMsgId ? { clientMsgId: p.clientMsgId } : {}),
    };
    io.to(roomId).emit("receive_message", message);
    if (typeof ack === "function") ack({ ok: true, message, duplicate: false });
  });
});

server.listen(PORT, "127.0.0.1", () => console.log(`baseline listening on ${PORT}`));
const stop = () => {
  io.close();
  Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
