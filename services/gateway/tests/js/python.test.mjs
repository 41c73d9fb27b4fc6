// A second stock client: python-socketio (PyPI), driven against the same stack. Runs when
// GATEWAY_E2E_PYTHON names a Python with python-socketio installed (scripts/test.d/40-gateway.sh sets it
// up in a venv); otherwise skipped.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { suite, withTimeout } from "./harness.mjs";

const PY = process.env.GATEWAY_E2E_PYTHON && path.resolve(process.env.GATEWAY_E2E_PYTHON);
const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../python");
const s = suite("python");

s.test("python-socketio: join, send, receive, typing and errors across both gateways", async (st, t) => {
  if (!PY) {
    t.skip("GATEWAY_E2E_PYTHON is not set (no python-socketio venv)");
    return;
  }
  const [alice, bob] = await st.users("alice", "bob");
  const room = await st.room(alice);
  await st.restOk("POST", `/rooms/${room.id}/join`, { token: bob.token });
  const cfg = {
    gateways: [st.gateways[0].url, st.gateways[1].url],
    roomId: room.id,
    alice: { id: alice.id, token: alice.token },
    bob: { id: bob.id, token: bob.token },
  };
  const child = spawn(PY, ["-m", "unittest", "-v", "test_gateway"], {
    cwd: DIR,
    env: { ...process.env, GW_E2E: JSON.stringify(cfg) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const code = await withTimeout(new Promise((resolve) => child.on("exit", resolve)), 60000, "python tests").catch((e) => {
    child.kill("SIGKILL");
    throw e;
  });
  t.diagnostic(out.trim().split("\n").slice(-6).join(" | "));
  assert.equal(code, 0, out);
}, { timeout: 90000 });
