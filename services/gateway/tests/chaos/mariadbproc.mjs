// A MariaDB server of the chaos suite's own (a fresh data directory, a free port, user chat/chat), so
// the suite can stop it for the "MariaDB stopped" fault without touching the machine's server. It
// imports nothing of the harness: the suite points CHAT_TEST_DATABASE_URL at it before loading the
// harness (which reads that variable once).

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Whether `cmd` is on PATH (or in the sbin folders Debian keeps mariadbd in). */
function which(cmd) {
  for (const d of [...(process.env.PATH || "").split(":"), "/usr/sbin", "/usr/local/sbin"]) {
    const p = path.join(d, cmd);
    if (d && fs.existsSync(p)) return p;
  }
  return null;
}

/** Whether MariaDB's server and installer are here (scripts/deps.sh installs them). */
export function mariadbAvailable() {
  return Boolean(which("mariadbd") && which("mariadb-install-db"));
}

export async function startMariadb() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chat-chaos-mariadb-"));
  const data = path.join(dir, "data");
  const port = await freePort();
  const asRoot = process.getuid?.() === 0 ? ["--user=root"] : [];
  const install = spawnSync(
    which("mariadb-install-db"),
    ["--no-defaults", `--datadir=${data}`, "--auth-root-authentication-method=normal", "--skip-test-db", ...asRoot],
    { encoding: "utf8", timeout: 60000 },
  );
  if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stdout}\n${install.stderr}`);
  const m = {
    port,
    dir,
    url: `mysql://chat:chat@127.0.0.1:${port}`,
    proc: null,
    exited: null,
    async start() {
      const log = fs.openSync(path.join(dir, "mariadbd.log"), "a");
      this.proc = spawn(
        which("mariadbd"),
        ["--no-defaults", `--datadir=${data}`, ...asRoot, `--port=${port}`, "--bind-address=127.0.0.1",
          `--socket=${path.join(dir, "sock")}`, "--skip-log-bin", "--innodb-buffer-pool-size=64M",
          "--max-connections=500"],
        { stdio: ["ignore", log, log] },
      );
      fs.closeSync(log);
      this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
      const deadline = Date.now() + 30000;
      while (!this.sql("SELECT 1", "root")) {
        if (this.proc.exitCode !== null) throw new Error(`mariadbd exited: ${this.tail()}`);
        if (Date.now() > deadline) throw new Error(`mariadbd on ${port} not answering: ${this.tail()}`);
        await sleep(100);
      }
    },
    /** Runs `sql` as `user`; the output, or null when the server did not answer. */
    sql(sql, user = "chat") {
      const pass = user === "root" ? [] : ["-pchat"];
      const r = spawnSync("mysql", [`-u${user}`, ...pass, "-h127.0.0.1", `-P${port}`, "-e", sql], { encoding: "utf8", timeout: 10000 });
      return r.status === 0 ? r.stdout : null;
    },
    /** Stops the server (SIGTERM: a clean shutdown; SIGKILL: a crash) and waits for it to exit. */
    async stop(signal = "SIGTERM") {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        this.proc.kill(signal);
        await this.exited;
      }
    },
    tail() {
      try {
        return fs.readFileSync(path.join(dir, "mariadbd.log"), "utf8").split("\n").slice(-20).join("\n");
      } catch {
        return "";
      }
    },
    async remove() {
      await this.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await m.start();
  if (m.sql("CREATE USER chat@'%' IDENTIFIED BY 'chat'; GRANT ALL ON *.* TO chat@'%';", "root") === null) {
    throw new Error("could not create the chat user on the suite's MariaDB");
  }
  return m;
}
