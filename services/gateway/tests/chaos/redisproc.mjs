// A Redis of the chaos suite's own (so killing it disturbs nobody else), with AOF as the project
// runs it: `appendonly yes`, `appendfsync everysec`, no RDB snapshots. It can be killed and started
// again from the same directory.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Proc, freePort, sleep } from "../../../../scripts/testlib/services.mjs";

export async function startRedis(logDir) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chat-chaos-redis-"));
  const r = {
    port,
    dir,
    url: `redis://127.0.0.1:${port}`,
    proc: null,
    generation: 0,
    async start() {
      this.proc = new Proc(
        `redis-${this.generation++}`,
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes",
          "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction"],
        { PATH: process.env.PATH },
        logDir,
      );
      const deadline = Date.now() + 20000;
      for (;;) {
        if (!this.proc.alive) throw new Error(`redis-server exited: ${this.proc.tail()}`);
        if (await ping(port)) return;
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} not answering`);
        await sleep(50);
      }
    },
    /** Kills it with `signal` (SIGKILL: a crash) and waits for the exit. */
    async kill(signal = "SIGKILL") {
      return this.proc.stop(signal, 5000);
    },
    async stop() {
      if (this.proc?.alive) await this.proc.stop("SIGTERM", 5000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await r.start();
  return r;
}

/** Whether a Redis answers PING on `port`. */
async function ping(port) {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on("error", () => done(false));
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}
