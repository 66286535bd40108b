// The stub runtime behind the runtime's real pool server in `cargo xtask real-agent`: the
// pool server spawns it as its runtime (`pnpm start` in RUNTIME_CWD, on
// GATEWAY_INTERNAL_PORT passed as PORT; runtime/convos-platform/pool-server/index.ts:134-213)
// and calls it as it calls OpenClaw's convos plugin
// (runtime/openclaw/src/convos/index.ts at the pinned commit; lines cited per route).
//
// It records every call it receives, body included, one JSON line each, in
// $STUB_RECORD_DIR/$INSTANCE_ID.jsonl, so the scenario can check what reached the agent
// (profileImage, metadata). It answers what the plugin answers; a joinUrl containing
// "pending" is a join that needs approval (index.ts:432-443: `{status: "pending_acceptance"}`).
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const port = parseInt(process.env.PORT || "18789", 10);
const token = process.env.OPENCLAW_GATEWAY_TOKEN || process.env.GATEWAY_TOKEN || "";
const recordFile = path.join(process.env.STUB_RECORD_DIR || ".", `${process.env.INSTANCE_ID || "agent"}.jsonl`);
let conversationId = null;

function record(entry) {
  fs.appendFileSync(recordFile, JSON.stringify({ at: new Date().toISOString(), ...entry }) + "\n");
}

function json(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

// The plugin's checkPoolAuth: `Authorization: Bearer <gateway token>`.
function authorized(req) {
  return !token || req.headers.authorization === `Bearer ${token}`;
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString();
      try { resolve(raw ? JSON.parse(raw) : {}); } catch { resolve({ unparsed: raw }); }
    });
  });
}

function random() {
  return Math.random().toString(16).slice(2, 14);
}

const server = http.createServer(async (req, res) => {
  const body = req.method === "POST" ? await readBody(req) : undefined;
  record({ method: req.method, path: req.url, authorized: authorized(req), body });
  if (req.method === "GET" && req.url === "/__openclaw__/canvas/") {
    // OpenClaw's readiness path (pool-server/index.ts:149).
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<html>canvas</html>");
    return;
  }
  if (!authorized(req)) { json(res, 401, { error: "Unauthorized" }); return; }
  if (req.method === "GET" && req.url === "/convos/status") {
    // index.ts:90-106,723-736.
    json(res, 200, { conversationId, inboxId: null, pending: false, clean: conversationId === null });
    return;
  }
  if (req.method === "POST" && req.url === "/convos/reset") {
    // index.ts:740-760.
    conversationId = null;
    json(res, 200, { ok: true, reset: true, status: { conversationId: null, inboxId: null, pending: false, clean: true } });
    return;
  }
  if (req.method === "POST" && (req.url === "/convos/conversation" || req.url === "/convos/join")) {
    if (conversationId) {
      // index.ts:297-302,395-400.
      json(res, 409, { error: "Instance already bound to a conversation. Terminate process and provision a new one." });
      return;
    }
    if (req.url === "/convos/join") {
      if (typeof body.inviteUrl !== "string" || !body.inviteUrl) {
        json(res, 400, { error: "inviteUrl (string) is required" });
        return;
      }
      if (body.inviteUrl.includes("pending")) {
        json(res, 200, { status: "pending_acceptance" });
        return;
      }
      conversationId = `conv-${random()}`;
      json(res, 200, { status: "joined", conversationId });
      return;
    }
    conversationId = `conv-${random()}`;
    const slug = random();
    json(res, 200, { conversationId, inviteUrl: `https://popup.convos.org/v2?i=${slug}`, inviteSlug: slug });
    return;
  }
  json(res, 404, { error: "Not Found" });
});

server.listen(port, () => {
  console.log(`[stub-runtime] listening on :${port}, recording to ${recordFile}`);
});

// A container's processes die with it: the pool server starts this one detached
// (pool-server/index.ts:194-204), so when the pool server is gone, this one goes too.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
