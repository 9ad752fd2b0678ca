// nkbridge browser test driver: internal/browsertest starts one of these per browser and
// drives Debian's Chromium through playwright-core with line-delimited JSON on stdin/stdout.
//
//   request:  {"id": 1, "op": "launch", ...}
//   response: {"id": 1, "ok": true, "result": ...}   or   {"id": 1, "ok": false, "error": "..."}
//   event:    {"event": "console", "page": 2, "type": "log", "text": "..."}   (no id)
//
// Ops: launch, newPage, goto, eval, waitFor, viewport, screenshot, closePage, close.
// On stdin EOF the browser is closed and the process exits.
import { createInterface } from "node:readline";
import { readFileSync, readdirSync } from "node:fs";
import { chromium } from "playwright-core";

// playwright-core 1.65.1 passes its own --disable-features list. Chromium honours only the last
// --disable-features switch, so the driver removes Playwright's (ignoreDefaultArgs needs the
// exact string) and passes ONE merged list. launch verifies the real command line has exactly
// one --disable-features: if playwright-core is bumped and its list changes, launch fails and
// this list must be updated.
const PLAYWRIGHT_DISABLED_FEATURES = [
  "AvoidUnnecessaryBeforeUnloadCheckSync",
  "DestroyProfileOnBrowserClose",
  "HttpsUpgrades",
  "HttpsFirstBalancedModeAutoEnable",
  "LensOverlay",
  "MediaRouter",
  "PaintHolding",
  "ThirdPartyStoragePartitioning",
  "AvoidCorsURLLoaderRestartOnRedirect",
  "TcpPortRandomizationWin",
  "OptimizationHints",
  "NetworkTimeServiceQuerying",
  "AimEnabled",
  "PreconnectToSearch",
  "msForceBrowserSignIn",
  "msEdgeUpdateLaunchServicesPreferredVersion",
];

let context = null;

const pages = new Map();
let nextPage = 1;

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function childProcesses() {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").filter((s) => s !== "");
      out.push({ pid: Number(d), cmdline });
    } catch {
      // the process went away
    }
  }
  return out;
}

function getPage(id) {
  const p = pages.get(id);
  if (!p) throw new Error(`no page ${id}`);
  return p;
}

const ops = {
  async launch(m) {
    if (context) throw new Error("already launched");
    const features = [...new Set([...PLAYWRIGHT_DISABLED_FEATURES, ...(m.disableFeatures || [])])];
    const args = [...(m.args || []), "--disable-features=" + features.join(",")];
    context = await chromium.launchPersistentContext(m.userDataDir, {
      executablePath: m.executablePath,
      headless: m.headless !== false,
      args,
      ignoreDefaultArgs: ["--disable-features=" + PLAYWRIGHT_DISABLED_FEATURES.join(",")],
      permissions: m.permissions || [],
      timeout: m.timeoutMs || 30000,
      viewport: { width: 1000, height: 700 },
    });
    if (m.initScript) await context.addInitScript({ content: m.initScript });
    // The persistent context opens one blank page; close it so tests see only their pages.
    for (const p of context.pages()) await p.close().catch(() => {});
    const browser = childProcesses().find((c) => c.cmdline.some((a) => a === "--user-data-dir=" + m.userDataDir));
    if (!browser) throw new Error("launched, but the browser process was not found among the driver's children");

    return { pid: browser.pid, cmdline: browser.cmdline, playwrightDisabledFeatures: PLAYWRIGHT_DISABLED_FEATURES };
  },

  async newPage(m) {
    if (!context) throw new Error("not launched");
    const page = await context.newPage();
    const id = nextPage++;
    pages.set(id, page);
    page.on("console", (msg) => send({ event: "console", page: id, type: msg.type(), text: msg.text() }));
    page.on("pageerror", (err) => send({ event: "pageerror", page: id, text: String(err && err.stack || err) }));
    page.on("crash", () => send({ event: "crash", page: id, text: "page crashed" }));
    page.on("close", () => pages.delete(id));
    if (m.url) await page.goto(m.url, { waitUntil: m.waitUntil || "load", timeout: m.timeoutMs || 30000 });
    return { page: id };
  },

  async goto(m) {
    await getPage(m.page).goto(m.url, { waitUntil: m.waitUntil || "load", timeout: m.timeoutMs || 30000 });
    return null;
  },

  // eval: m.expr is an expression (a Promise is awaited; a function is called) or, with
  // hasArg, a function expression called with m.arg (inlined as JSON).
  async eval(m) {
    const page = getPage(m.page);
    const src = String(m.expr).trim().replace(/;+$/, "");
    const js = m.hasArg
      ? `(${src})(${JSON.stringify(m.arg === undefined ? null : m.arg)})`
      : `(async () => { const v = (${src}); return typeof v === "function" ? await v() : await v; })()`;
    const v = await page.evaluate(js);
    return v === undefined ? null : v;
  },

  async waitFor(m) {
    const page = getPage(m.page);
    const h = await page.waitForFunction(m.expr, m.hasArg ? m.arg : undefined, {
      timeout: m.timeoutMs || 30000,
      polling: m.pollingMs || 100,
    });
    const v = await h.jsonValue();
    await h.dispose();
    return v === undefined ? null : v;
  },

  async viewport(m) {
    await getPage(m.page).setViewportSize({ width: m.width, height: m.height });
    return null;
  },

  async screenshot(m) {
    await getPage(m.page).screenshot({ path: m.path, fullPage: !!m.fullPage, timeout: m.timeoutMs || 30000 });
    return null;
  },

  async closePage(m) {
    const p = pages.get(m.page);
    if (p) await p.close();
    return null;
  },

  async close() {
    await shutdown();
    return null;
  },
};

async function shutdown() {
  const c = context;
  context = null;
  if (c) await c.close().catch(() => {});
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let m;
  try {
    m = JSON.parse(line);
  } catch (e) {
    send({ event: "error", text: "bad request line: " + e.message });
    return;
  }
  const op = ops[m.op];
  if (!op) {
    send({ id: m.id, ok: false, error: `unknown op ${JSON.stringify(m.op)}` });
    return;
  }
  try {
    const result = await op(m);
    send({ id: m.id, ok: true, result });
  } catch (e) {
    send({ id: m.id, ok: false, error: String((e && e.message) || e) });
  }
  if (m.op === "close") process.exit(0);
});
rl.on("close", async () => {
  await shutdown();
  process.exit(0);
});
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, async () => {
    await shutdown();
    process.exit(0);
  });
}
