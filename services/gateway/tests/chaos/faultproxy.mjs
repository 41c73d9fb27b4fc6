// A TCP proxy on loopback that can slow or cut a link: the chaos suite puts one between a gateway and
// Redis. `delay(ms)` holds every chunk that long in each direction (order kept); `cut()` destroys the
// live connections and refuses new ones until `restore()`.

import net from "node:net";

export async function startFaultProxy(targetPort) {
  let delayMs = 0;
  let cut = false;
  const pairs = new Set();
  const forward = (from, to) => {
    from.on("data", (chunk) => {
      if (delayMs === 0) {
        to.write(chunk);
        return;
      }
      // Chunks keep their order: each leaves `delayMs` after it came, and timers of equal delay fire
      // in the order they were set.
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, delayMs);
    });
  };
  const server = net.createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const up = net.connect(targetPort, "127.0.0.1");
    const pair = { client, up };
    pairs.add(pair);
    const close = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, up]) {
      s.on("error", close);
      s.on("close", close);
    }
    forward(client, up);
    forward(up, client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    delay(ms) {
      delayMs = ms;
    },
    cut() {
      cut = true;
      for (const { client, up } of [...pairs]) {
        client.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    restore() {
      cut = false;
      delayMs = 0;
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
