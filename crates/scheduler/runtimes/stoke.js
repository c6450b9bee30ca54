// stoke's runtime interfaces for Node.js functions (seed 000): a workflow step prepares a later step's
// instance; the prepared instance does its own preparation, then waits for its turn.
//
//   const stoke = require('stoke');
//   exports.handler = async (event) => {
//     const params = await stoke.preparedParams();   // null when this invocation was not prepared
//     if (params !== null) {
//       const image = await download(params.key);     // while the earlier step still runs
//       event = await stoke.waitTurn();               // the step's input, once the workflow reaches it
//     }
//     ...
//   };
//
// Standard library only. `require('stoke')` works in stoke's node runtime as is; a function with its own
// runtime client copies this file into its archive.
'use strict';
const http = require('http');

const PREFIX = '/2018-06-01/stoke';

class StokeError extends Error {
  constructor(errorType, message, status) {
    super(`${errorType}: ${message}`);
    this.name = 'StokeError';
    this.errorType = errorType;
    this.status = status;
  }
}

// The prepared instance's turn will not come (expired, another branch, the execution ended).
class ReservationReleased extends StokeError {
  constructor(errorType, message, status) {
    super(errorType, message, status);
    this.name = 'ReservationReleased';
  }
}

function call(method, path, body) {
  const api = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!api) return Promise.reject(new StokeError('Stoke.NoRuntimeApi', 'AWS_LAMBDA_RUNTIME_API is not set: not running on stoke'));
  const [host, port] = api.split(':');
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
    const req = http.request({ host, port, method, path: PREFIX + path, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode < 400) return resolve(text);
        let doc = {};
        try { doc = JSON.parse(text); } catch (_) { /* not JSON */ }
        const type = doc.errorType || 'Stoke.Error';
        const Cls = type === 'Stoke.ReservationReleased' ? ReservationReleased : StokeError;
        reject(new Cls(type, doc.errorMessage || text, res.statusCode));
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const parse = (text, empty) => (text ? JSON.parse(text) : empty);

// Reserves an instance of `fn` for a later step of this execution, started with `params`.
async function prepare(fn, params) {
  return JSON.parse(await call('POST', '/prepare', JSON.stringify({ function: fn, params: params === undefined ? null : params })));
}

// Inside a prepared instance, its preparation input; null when the invocation is not a preparation.
async function preparedParams() {
  try {
    return parse(await call('GET', '/prepared'), null);
  } catch (e) {
    if (e.errorType === 'Stoke.NotPrepared') return null;
    throw e;
  }
}

// Blocks until the workflow reaches this instance's step; resolves to the step's input.
async function waitTurn() {
  return parse(await call('GET', '/turn'), {});
}

// True when idle instances of `fn` outnumber the invocations queued for it.
async function isAvailable(fn) {
  return Boolean(JSON.parse(await call('GET', `/available/${encodeURIComponent(fn).replace(/%3A/g, ':')}`)).available);
}

// During init: the workflow step this instance was started for ({execution, event, prepared}); null when
// it was started for none. A cold step can prepare the next one before its own heavy init.
async function origin() {
  try {
    return JSON.parse(await call('GET', '/origin'));
  } catch (e) {
    if (e.errorType === 'Stoke.NoOrigin') return null;
    throw e;
  }
}

// The directory the steps of this execution share on this node; null when it has none.
async function scratch() {
  try {
    return JSON.parse(await call('GET', '/scratch')).path;
  } catch (e) {
    if (e.errorType === 'Stoke.NoScratch') return null;
    throw e;
  }
}

module.exports = { prepare, preparedParams, waitTurn, isAvailable, scratch, origin, StokeError, ReservationReleased };
