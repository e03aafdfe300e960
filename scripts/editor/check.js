#!/usr/bin/env node
// Opens YAML files in the YAML language server (the one behind VS Code's,
// Neovim's and Helix's YAML support), exactly as an editor does, and prints
// the diagnostics it publishes for each: proof that the `$schema` modeline
// at the top of a policy file reaches the published schema.
//
// Usage: check.js SERVER_JS FILE...   (prints one JSON line per file)
//
// A line `#@complete` in a file is opened as blank (its indentation kept),
// and the completions the server offers there are printed too, as an
// editor shows them when the user types at that place.
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

const [serverJs, ...files] = process.argv.slice(2);
const server = spawn(process.execPath, [serverJs, "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
let buffer = Buffer.alloc(0);
let nextId = 1;
const pending = new Map();
const waiting = new Map(); // uri -> resolve
const results = new Map();

function send(message) {
  const body = Buffer.from(JSON.stringify({ jsonrpc: "2.0", ...message }));
  server.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
  server.stdin.write(body);
}
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve) => pending.set(id, resolve));
}
server.stdout.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const header = buffer.indexOf("\r\n\r\n");
    if (header < 0) return;
    const length = Number(/Content-Length: (\d+)/i.exec(buffer.slice(0, header).toString())[1]);
    if (buffer.length < header + 4 + length) return;
    const message = JSON.parse(buffer.slice(header + 4, header + 4 + length).toString());
    buffer = buffer.slice(header + 4 + length);
    if (message.id !== undefined && pending.has(message.id)) {
      pending.get(message.id)(message.result);
      pending.delete(message.id);
    } else if (message.id !== undefined && message.method) {
      // workspace/configuration and similar: answer with defaults.
      const items = (message.params && message.params.items) || [];
      send({ id: message.id, result: items.map(() => null) });
    } else if (message.method === "textDocument/publishDiagnostics") {
      const { uri, diagnostics } = message.params;
      results.set(uri, diagnostics);
      // The first publication can come before the schema is loaded; take
      // the latest one once the server has been quiet for a moment.
      if (waiting.has(uri)) {
        clearTimeout(waiting.get(uri).timer);
        waiting.get(uri).timer = setTimeout(waiting.get(uri).done, 1500);
      }
    }
  }
});

async function main() {
  const root = pathToFileURL(process.cwd()).href;
  await request("initialize", {
    processId: process.pid,
    rootUri: root,
    capabilities: { textDocument: { publishDiagnostics: {}, completion: { completionItem: { snippetSupport: false } } }, workspace: { configuration: true } },
    initializationOptions: {},
  });
  send({ method: "initialized", params: {} });
  send({
    method: "workspace/didChangeConfiguration",
    params: { settings: { yaml: { validate: true, schemaStore: { enable: false } } } },
  });
  for (const file of files) {
    const uri = pathToFileURL(path.resolve(file)).href;
    const lines = fs.readFileSync(file, "utf8").split("\n");
    const at = lines.findIndex((l) => l.trim() === "#@complete");
    const indent = at >= 0 ? lines[at].indexOf("#") : 0;
    if (at >= 0) lines[at] = " ".repeat(indent);
    const text = lines.join("\n");
    const diagnostics = await new Promise((resolve) => {
      const entry = { timer: null, done: () => resolve(results.get(uri) || []) };
      entry.timer = setTimeout(entry.done, 10000);
      waiting.set(uri, entry);
      send({
        method: "textDocument/didOpen",
        params: { textDocument: { uri, languageId: "yaml", version: 1, text } },
      });
    });
    waiting.delete(uri);
    let completions = [];
    if (at >= 0) {
      const result = await request("textDocument/completion", {
        textDocument: { uri },
        position: { line: at, character: indent },
      });
      const items = Array.isArray(result) ? result : (result && result.items) || [];
      completions = items.map((i) => i.label);
    }
    console.log(JSON.stringify({
      file,
      diagnostics: diagnostics.map((d) => ({ line: d.range.start.line + 1, column: d.range.start.character + 1, message: d.message })),
      completions,
    }));
  }
  await request("shutdown", null);
  send({ method: "exit" });
  setTimeout(() => process.exit(0), 200);
}
main().catch((e) => { console.error(e); process.exit(2); });
