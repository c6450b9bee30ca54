// stoke's Node.js runtime: speaks the Lambda Runtime API with Node's standard library only.
// Handlers may be async (return a promise) or take a callback, as on Lambda.
'use strict';
const net = require('net');
const path = require('path');
const util = require('util');

// The invocation running now: stamped on JSON log records.
let currentRequestId;

// Lambda's JSON log format (LoggingConfig LogFormat JSON): each console call writes one JSON object to
// stdout, at AWS_LAMBDA_LOG_LEVEL (default INFO) and above, as Lambda's Node runtime does.
if ((process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON') {
  const ranks = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, FATAL: 5 };
  const lowest = ranks[(process.env.AWS_LAMBDA_LOG_LEVEL || 'INFO').toUpperCase()] ?? ranks.INFO;
  const write = (level) => (...args) => {
    if (ranks[level] < lowest) return;
    const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
    const err = args.length === 1 && args[0] instanceof Error ? args[0] : null;
    if (err) {
      record.message = err.message;
      record.errorType = err.name;
      record.errorMessage = err.message;
      record.stackTrace = (err.stack || '').split('\n');
    } else {
      record.message = util.format(...args);
    }
    process.stdout.write(JSON.stringify(record) + '\n');
  };
  console.trace = write('TRACE');
  console.debug = write('DEBUG');
  console.log = write('INFO');
  console.info = write('INFO');
  console.warn = write('WARN');
  console.error = write('ERROR');
}

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const PREFIX = '/2018-06-01/runtime';

// One kept-alive HTTP/1.1 connection to the Runtime API, spoken over its socket: a request is one write, a
// response its status line, headers and Content-Length body. Node's http client costs this process more per
// invocation than the rest of the runtime loop.
class RuntimeApi {
  constructor(host, port) {
    this.host = host;
    this.port = Number(port || 80);
    this.sock = null;
    this.pending = Buffer.alloc(0);
    this.waiter = null;
  }

  open() {
    const sock = net.connect(this.port, this.host);
    sock.setNoDelay(true);
    sock.on('data', (chunk) => {
      this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
      this.answer();
    });
    // Only the connection in use fails the request waiting on it: an older one's late 'close' (after its
    // 'error' made the request try again on a new one) concerns nothing that waits.
    const lost = (err) => {
      if (this.sock !== sock) return;
      this.sock = null;
      const waiter = this.waiter;
      this.waiter = null;
      if (waiter) waiter.reject(err || new Error('the Runtime API closed the connection'));
    };
    sock.on('error', lost);
    sock.on('close', () => lost());
    this.sock = sock;
    this.pending = Buffer.alloc(0);
  }

  // Hands the waiting request its response once all of it has arrived.
  answer() {
    if (!this.waiter) return;
    const end = this.pending.indexOf('\r\n\r\n');
    if (end < 0) return;
    const lines = this.pending.toString('latin1', 0, end).split('\r\n');
    const headers = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon > 0) headers[lines[i].slice(0, colon).trim().toLowerCase()] = lines[i].slice(colon + 1).trim();
    }
    const start = end + 4;
    const length = Number(headers['content-length'] || 0);
    if (this.pending.length < start + length) return;
    const body = Buffer.from(this.pending.subarray(start, start + length));
    this.pending = this.pending.subarray(start + length);
    const waiter = this.waiter;
    this.waiter = null;
    if ((headers.connection || '').toLowerCase() === 'close') {
      this.sock.destroy();
      this.sock = null;
    }
    waiter.resolve({ res: { statusCode: Number(lines[0].split(' ')[1]), headers }, body });
  }

  send(method, p, body, headers) {
    if (!this.sock) this.open();
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
    let head = `${method} ${p} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n`;
    for (const [name, value] of Object.entries(headers || {})) head += `${name}: ${value}\r\n`;
    head += `Content-Length: ${payload.length}\r\n\r\n`;
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.sock.write(Buffer.concat([Buffer.from(head, 'latin1'), payload]));
    });
  }
}

const api = new RuntimeApi(HOST, PORT);

// Sends a request to the Runtime API, once more on a new connection if the kept one was lost.
async function request(method, p, body, headers) {
  try {
    return await api.send(method, PREFIX + p, body, headers);
  } catch (err) {
    return api.send(method, PREFIX + p, body, headers);
  }
}

function errorBody(err) {
  const e = err instanceof Error ? err : new Error(String(err));
  return { errorType: e.name || 'Error', errorMessage: e.message, trace: (e.stack || '').split('\n') };
}

async function initError(type, err) {
  const body = errorBody(err);
  body.errorType = type;
  console.error(`[ERROR] ${type}: ${body.errorMessage}`);
  await request('POST', '/init/error', JSON.stringify(body), {
    'Content-Type': 'application/json', 'Lambda-Runtime-Function-Error-Type': type,
  });
  process.exit(1);
}

async function loadHandler() {
  const spec = process.env._HANDLER || '';
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) return initError('Runtime.MalformedHandlerName', new Error(`Bad handler '${spec}'`));
  const moduleName = spec.slice(0, dot);
  const fnName = spec.slice(dot + 1);
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let mod;
  try {
    mod = require(path.resolve(root, moduleName));
  } catch (err) {
    if (err && err.code === 'ERR_REQUIRE_ESM') {
      try { mod = await import(path.resolve(root, moduleName + '.mjs')); } catch (e2) { return initError('Runtime.ImportModuleError', e2); }
    } else if (err && err.code === 'MODULE_NOT_FOUND') {
      return initError('Runtime.ImportModuleError', new Error(`Cannot find module '${moduleName}'`));
    } else if (err instanceof SyntaxError) {
      return initError('Runtime.UserCodeSyntaxError', err);
    } else {
      return initError('Runtime.InitError', err);
    }
  }
  const handler = mod && mod[fnName];
  if (typeof handler !== 'function') return initError('Runtime.HandlerNotFound', new Error(`${spec} is undefined or not exported`));
  return handler;
}

function invoke(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, value) => { if (!settled) { settled = true; err ? reject(err) : resolve(value); } };
    try {
      const r = handler(event, context, done);
      if (r && typeof r.then === 'function') r.then((v) => done(null, v), (e) => done(e));
      else if (handler.length < 3) done(null, r);
    } catch (err) {
      done(err);
    }
  });
}

async function main() {
  const handler = await loadHandler();
  for (;;) {
    const { res, body } = await request('GET', '/invocation/next');
    const id = res.headers['lambda-runtime-aws-request-id'];
    currentRequestId = id;
    const deadline = Number(res.headers['lambda-runtime-deadline-ms'] || 0);
    if (res.headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = res.headers['lambda-runtime-trace-id'];
    const cc = res.headers['lambda-runtime-client-context'];
    const context = {
      awsRequestId: id,
      invokedFunctionArn: res.headers['lambda-runtime-invoked-function-arn'],
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: cc ? JSON.parse(cc) : undefined,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      callbackWaitsForEmptyEventLoop: true,
    };
    let event;
    try {
      event = body.length ? JSON.parse(body.toString('utf8')) : {};
    } catch (err) {
      const e = errorBody(err); e.errorType = 'Runtime.UnmarshalError';
      await request('POST', `/invocation/${id}/error`, JSON.stringify(e), { 'Content-Type': 'application/json' });
      continue;
    }
    try {
      const result = await invoke(handler, event, context);
      const out = JSON.stringify(result === undefined ? null : result);
      await request('POST', `/invocation/${id}/response`, out, { 'Content-Type': 'application/json' });
    } catch (err) {
      const e = errorBody(err);
      console.error(`[ERROR] ${e.errorType}: ${e.errorMessage}`);
      await request('POST', `/invocation/${id}/error`, JSON.stringify(e), { 'Content-Type': 'application/json' });
    }
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
