// Builds the web client into dist/ (served by the API at /, see WEB_DIR): the page, the app's ES
// modules and styles as they are (no bundler), and socket.io-client's ESM build from node_modules.
//   npm ci && node build.mjs
// dist/ is build output: never committed.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(HERE, "src");
const DIST = path.join(HERE, "dist");
const ASSETS = path.join(DIST, "assets");
const SIO = path.join(HERE, "node_modules/socket.io-client/dist");

if (!fs.existsSync(path.join(SIO, "socket.io.esm.min.js"))) {
  console.error("web/build.mjs: socket.io-client is not installed; run `npm ci` in web/ first");
  process.exit(1);
}
// Build into a fresh folder, then swap it in, so a running API never serves a half-written client.
const tmp = fs.mkdtempSync(path.join(HERE, ".dist-"));
try {
  fs.mkdirSync(path.join(tmp, "assets"));
  for (const f of fs.readdirSync(SRC)) {
    const to = f === "index.html" ? path.join(tmp, f) : path.join(tmp, "assets", f);
    fs.copyFileSync(path.join(SRC, f), to);
  }
  for (const f of ["socket.io.esm.min.js", "socket.io.esm.min.js.map"]) {
    fs.copyFileSync(path.join(SIO, f), path.join(tmp, "assets", f));
  }
  fs.chmodSync(tmp, 0o755); // mkdtemp makes it private; the API may run as another user
  fs.rmSync(DIST, { recursive: true, force: true });
  fs.renameSync(tmp, DIST);
} catch (e) {
  fs.rmSync(tmp, { recursive: true, force: true });
  throw e;
}
const files = fs.readdirSync(ASSETS).length + 1;
console.log(`web: built ${files} files into ${path.relative(process.cwd(), DIST) || "."}`);
