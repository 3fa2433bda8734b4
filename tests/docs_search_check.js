// Runs mkdocs-material's search worker (from a built site) on the site's offline search index in node, as the
// browser does from file://, and prints the locations found for a query. Used by tests/test_docs.py.
// usage: node search_check.js SITE_DIR QUERY  -> prints JSON of result locations
const fs = require('fs'), vm = require('vm'), path = require('path');
const site = process.argv[2], query = process.argv[3];
const workerDir = path.join(site, 'assets/javascripts/workers');
const worker = fs.readdirSync(workerDir).find(f => /^search\..*\.min\.js$/.test(f));
const listeners = [];
const ctx = { console, setTimeout, clearTimeout, Promise };
ctx.self = ctx; ctx.window = undefined;
ctx.addEventListener = (type, fn) => { if (type === 'message') listeners.push(fn); };
ctx.importScripts = (...urls) => urls.forEach(u => vm.runInContext(fs.readFileSync(u, 'utf8'), ctx));
const replies = [];
ctx.postMessage = (msg) => replies.push(msg);
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(path.join(workerDir, worker), 'utf8'), ctx);
const code = fs.readFileSync(path.join(site, 'search/search_index.js'), 'utf8');
vm.runInContext(code.replace(/^var __index =/, 'self.__index ='), ctx);
const send = (data) => listeners.forEach(fn => fn({ data }));
const wait = (n) => new Promise((ok, fail) => { const t0 = Date.now(); (function poll() {
  if (replies.length >= n) return ok(); if (Date.now() - t0 > 10000) return fail(new Error('timeout'));
  setTimeout(poll, 10); })(); });
(async () => {
  send({ type: 0, data: { config: ctx.__index.config, docs: ctx.__index.docs, options: { suggest: false } } });
  await wait(1);
  send({ type: 2, data: query });
  await wait(2);
  const res = replies[1];
  const locs = (res.data.items || []).flat().map(i => i.location);
  console.log(JSON.stringify({ ready: replies[0].type, type: res.type, locations: locs }));
})().catch(e => { console.error(e); process.exit(1); });
