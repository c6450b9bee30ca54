// stoke's Node.js runtime: speaks the Lambda Runtime API with Node's standard library only.
// Handlers may be async (return a promise) or take a callback, as on Lambda.
'use strict';
const http = require('http');
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
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const PREFIX = '/2018-06-01/runtime';

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: PORT, method, path: PREFIX + p, agent, headers: headers || {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
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
