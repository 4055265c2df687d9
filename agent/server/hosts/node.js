// The Node runtime host of a bothy runner. bothy-agent starts it once per
// runner container with its control socket as fd 3, and it serves the agent one
// message at a time:
//
//   run       execute the code in this long-lived process, in a function scope
//             of its own, with console, process.stdout/stderr/exit/env and the
//             timers captured for this run; answer "exit" with the output
//   app_init  load an app's code once
//   invoke    call the app's fetch(request, env) and answer with its Response;
//             storage calls go to the agent as "storage" messages
//
// Messages are a 4-byte big-endian length and that many bytes of JSON.
'use strict';
const net = require('net');
const vm = require('vm');
const { Console } = require('console');
const { Writable, Readable } = require('stream');
const Module = require('module');

const ctl = new net.Socket({ fd: 3, readable: true, writable: true });
let inbox = Buffer.alloc(0);
const waiting = new Map(); // storage call id -> resolve
let nextCall = 1;

function send(msg) {
  const body = Buffer.from(JSON.stringify(msg));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  ctl.write(Buffer.concat([head, body]));
}

ctl.on('data', (d) => {
  inbox = inbox.length ? Buffer.concat([inbox, d]) : d;
  while (inbox.length >= 4) {
    const n = inbox.readUInt32BE(0);
    if (inbox.length < 4 + n) break;
    const msg = JSON.parse(inbox.subarray(4, 4 + n).toString());
    inbox = inbox.subarray(4 + n);
    dispatch(msg);
  }
});
ctl.on('end', () => process.exit(0));
ctl.on('error', () => process.exit(0));

let current = null; // the run or invoke in progress, for stray errors

process.on('uncaughtException', (e) => { if (current) current.fail(e); });
process.on('unhandledRejection', (e) => { if (current) current.fail(e); });

function capture(cap) {
  const c = { chunks: [], size: 0, truncated: false };
  c.stream = new Writable({
    write(chunk, enc, cb) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, enc);
      const room = cap - c.size;
      if (b.length > room) c.truncated = true;
      if (room > 0) {
        const keep = b.subarray(0, room);
        c.chunks.push(keep);
        c.size += keep.length;
      }
      cb();
    },
  });
  c.stream.isTTY = false;
  c.text = () => Buffer.concat(c.chunks);
  return c;
}

// userStack is an error's stack without the host's own frames.
function userStack(e) {
  const s = (e && e.stack) || String(e);
  return s.split('\n').filter((l) => !/^\s+at .*(\[eval\]|node:vm|node:events|node:internal|node:net)/.test(l)).join('\n');
}

class Exit extends Error {
  constructor(code) { super('process.exit(' + code + ')'); this.exitCode = code; }
}

// timers makes the timer functions of one run, counting what is pending so the
// run ends when its code and its timers are done, as a node process would.
function timers(onIdle) {
  const live = new Set();
  const done = (h) => { live.delete(h); if (live.size === 0) setImmediate(onIdle); };
  const t = {
    setTimeout(fn, ms, ...a) {
      const h = setTimeout(() => { done(h); fn(...a); }, ms);
      live.add(h);
      return h;
    },
    setInterval(fn, ms, ...a) {
      const h = setInterval(fn, ms, ...a);
      live.add(h);
      return h;
    },
    setImmediate(fn, ...a) {
      const h = setImmediate(() => { done(h); fn(...a); });
      live.add(h);
      return h;
    },
    clearTimeout(h) { clearTimeout(h); if (live.has(h)) done(h); },
    clearInterval(h) { clearInterval(h); if (live.has(h)) done(h); },
    clearImmediate(h) { clearImmediate(h); if (live.has(h)) done(h); },
    pending: () => live.size,
    clearAll() { for (const h of live) { clearTimeout(h); clearInterval(h); clearImmediate(h); } live.clear(); },
  };
  return t;
}

const params = ['require', 'module', 'exports', '__filename', '__dirname', 'console', 'process',
  'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate'];

function run(m) {
  const cap = m.max_output || 1 << 20;
  const out = capture(cap);
  const err = capture(cap);
  const cpu0 = process.cpuUsage();
  const started = Date.now();
  let finished = false;
  let exitCode = 0;
  let timedOut = false;
  let codeDone = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    t.clearAll();
    current = null;
    const cpu = process.cpuUsage(cpu0);
    send({
      op: 'exit', exit_code: exitCode, timed_out: timedOut,
      stdout: out.text().toString('base64'), stderr: err.text().toString('base64'),
      stdout_truncated: out.truncated, stderr_truncated: err.truncated,
      cpu_ms: (cpu.user + cpu.system) / 1000, maxrss_kb: process.resourceUsage().maxRSS,
      duration_ms: Date.now() - started,
    });
  };
  const fail = (e) => {
    if (e instanceof Exit) exitCode = e.exitCode;
    else {
      if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') timedOut = true;
      err.stream.write(userStack(e) + '\n');
      exitCode = 1;
    }
    finish();
  };
  const t = timers(() => { if (codeDone && t.pending() === 0) finish(); });
  current = { fail };
  const deadline = setTimeout(() => { timedOut = true; exitCode = 137; finish(); }, m.timeout_ms || 10000);
  const env = Object.assign({}, m.env || {});
  const proc = new Proxy(process, {
    get(target, key) {
      switch (key) {
        case 'stdout': return out.stream;
        case 'stderr': return err.stream;
        case 'stdin': return Readable.from([Buffer.from(m.stdin || '', 'base64')]);
        case 'env': return env;
        case 'argv': return [process.execPath, 'main.js'];
        case 'exit': return (code) => { throw new Exit(code === undefined ? 0 : code); };
        case 'exitCode': return exitCode;
      }
      const v = Reflect.get(target, key);
      return typeof v === 'function' ? v.bind(target) : v;
    },
    set(target, key, value) {
      if (key === 'exitCode') { exitCode = value; return true; }
      return Reflect.set(target, key, value);
    },
  });
  try {
    process.chdir(m.cwd);
    const filename = m.cwd + '/main.js';
    const mod = new Module(filename);
    mod.filename = filename;
    mod.paths = Module._nodeModulePaths(m.cwd);
    const req = Module.createRequire(filename);
    globalThis.__bothy_args = [req, mod, mod.exports, filename, m.cwd,
      new Console({ stdout: out.stream, stderr: err.stream }), proc,
      t.setTimeout, t.setInterval, t.setImmediate, t.clearTimeout, t.clearInterval, t.clearImmediate];
    const src = '(async function (' + params.join(', ') + ') {\n' + m.code +
      '\n}).apply(undefined, globalThis.__bothy_args)';
    const p = vm.runInThisContext(src, { filename: 'main.js', lineOffset: -1, timeout: m.timeout_ms || 10000 });
    delete globalThis.__bothy_args;
    p.then(() => { codeDone = true; if (t.pending() === 0) setImmediate(() => { if (t.pending() === 0) finish(); }); },
      fail);
  } catch (e) {
    fail(e);
  }
}

// --- apps ------------------------------------------------------------------

function call(kind, args) {
  const id = nextCall++;
  return new Promise((resolve, reject) => {
    waiting.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
    send(Object.assign({ op: 'storage', id, call: kind }, args));
  });
}

const storage = {
  async get(key) { const m = await call('get', { key }); return m.found ? m.value : undefined; },
  async put(key, value) { await call('put', { key, value: value === undefined ? null : value }); },
  async delete(key) { return !!(await call('delete', { key })).found; },
  async list(prefix = '', limit = 0) {
    if (typeof prefix === 'object' && prefix) { limit = prefix.limit || 0; prefix = prefix.prefix || ''; }
    return new Map((await call('list', { prefix, limit })).entries || []);
  },
  async transaction(fn) {
    await call('begin', {});
    let v;
    try { v = await fn(storage); } catch (e) { await call('rollback', {}); throw e; }
    await call('commit', {});
    return v;
  },
  sql: {
    async exec(query, ...params) {
      const m = await call('sql', { query, params });
      const rows = m.rows || [];
      return {
        rows, columnNames: m.columns || [], rowsRead: m.rows_read || 0, rowsWritten: m.rows_written || 0,
        toArray: () => rows,
        one() { if (rows.length !== 1) throw new Error('expected exactly one row, got ' + rows.length); return rows[0]; },
        [Symbol.iterator]: () => rows[Symbol.iterator](),
      };
    },
  },
};

let app = null;
let appEnv = null;
let appConsole = null;
let appLogs = null;
const exportsNames = [];

function appInit(m) {
  const filename = '/tmp/app.js';
  const mod = new Module(filename);
  mod.filename = filename;
  mod.paths = Module._nodeModulePaths('/tmp');
  appLogs = capture(m.max_output || 65536);
  appConsole = new Console({ stdout: appLogs.stream, stderr: appLogs.stream });
  const code = m.code.replace(/^\s*export\s+default\s+/m, 'module.exports.default = ')
    .replace(/^\s*export\s+(async\s+function|function|const|let|class)\s+([A-Za-z_$][\w$]*)/mg,
      (all, kind, name) => { exportsNames.push(name); return kind + ' ' + name; });
  const src = '(function (require, module, exports, console) {' + code + '\n' +
    exportsNames.map((n) => 'module.exports.' + n + ' = ' + n + ';').join('\n') + '\n})';
  vm.runInThisContext(src, { filename: 'app.js' })(Module.createRequire(filename), mod, mod.exports, appConsole);
  const e = mod.exports;
  const handler = (e.default && e.default.fetch) ? e.default : (typeof e.fetch === 'function' ? e : null);
  const fetch = handler ? handler.fetch.bind(handler) : (typeof e.default === 'function' ? e.default : null);
  if (!fetch) throw new Error('the app exports no fetch(request, env) handler');
  app = fetch;
  appEnv = Object.assign({}, m.env || {}, { storage });
}

async function invoke(m) {
  appLogs.chunks = []; appLogs.size = 0; appLogs.truncated = false;
  const cpu0 = process.cpuUsage();
  const r = m.request;
  let out;
  try {
    const init = { method: r.method, headers: r.headers || {} };
    if (r.method !== 'GET' && r.method !== 'HEAD' && r.body) init.body = Buffer.from(r.body, 'base64');
    let res = await app(new Request(r.url, init), appEnv);
    if (!(res instanceof Response)) {
      res = typeof res === 'string' ? new Response(res) : Response.json ? Response.json(res) : new Response(JSON.stringify(res));
    }
    const body = Buffer.from(await res.arrayBuffer());
    const headers = {};
    res.headers.forEach((v, k) => { headers[k] = v; });
    out = { op: 'response', status: res.status, headers, body: body.toString('base64') };
  } catch (e) {
    appLogs.stream.write(userStack(e) + '\n');
    out = { op: 'error', message: (e && e.message) || String(e) };
  }
  const cpu = process.cpuUsage(cpu0);
  out.logs = appLogs.text().toString();
  out.logs_truncated = appLogs.truncated;
  out.cpu_ms = (cpu.user + cpu.system) / 1000;
  send(out);
}

function dispatch(m) {
  switch (m.op) {
    case 'run': return run(m);
    case 'app_init':
      try { appInit(m); send({ op: 'ready' }); } catch (e) { send({ op: 'error', message: String((e && e.stack) || e) }); }
      return;
    case 'invoke': return invoke(m);
    case 'storage_result': {
      const w = waiting.get(m.id);
      if (w) { waiting.delete(m.id); w(m); }
      return;
    }
    default: send({ op: 'error', message: 'unknown op ' + m.op });
  }
}

send({ op: 'ready', pid: process.pid });
