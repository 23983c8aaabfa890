// The serve tests' shared part: start `gptoss serve` under mpirun, wait until it is ready, talk
// HTTP to it, stop it the graceful way (SIGUSR1 to mpirun, which forwards it to every rank).
'use strict';
const { spawn } = require('node:child_process');
const http = require('node:http');

const GPTOSS = process.env.GPTOSS;
const MPIRUN = process.env.MPIRUN || 'mpirun';

function fail(message) {
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

// Starts a server on `np` ranks; resolves once it logs "ready" with {port, proc, log()}.
function startServer({ np = 1, model, args = [], mpirunArgs = [], readyTimeoutMs = 120000 }) {
  const argv = ['--oversubscribe', ...mpirunArgs, '-np', String(np), '-x', 'OMP_NUM_THREADS=1', '-x', 'OPENBLAS_NUM_THREADS=1',
                GPTOSS, 'serve', '--model', model, '--port', '0', ...args];
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
                OMPI_MCA_mpi_yield_when_idle: '1' };
  const proc = spawn(MPIRUN, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready after ${readyTimeoutMs} ms:\n${stderr}`)),
                             readyTimeoutMs);
    let port = 0;
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on http:\/\/[^ ]*:(\d+)\//.exec(stderr);
      if (m) port = Number(m[1]);
      if (port && /serve: ready/.test(stderr)) {
        clearTimeout(timer);
        resolve({ port, proc, exited, log: () => stderr, base: `http://127.0.0.1:${port}` });
      }
    });
    proc.stdout.on('data', () => {});
    exited.then(({ code }) => reject(new Error(`server exited (${code}) before it was ready:\n${stderr}`)));
  });
}

// The graceful stop; resolves with mpirun's exit code.
async function stopServer(server) {
  server.proc.kill('SIGUSR1');
  const { code, signal } = await server.exited;
  return signal ? 128 : code;
}

// One HTTP request; resolves {status, headers, body (string)}.
function request(server, method, path, { body, headers = {}, timeoutMs = 300000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(`${server.base}${path}`, {
      method,
      headers: { ...(data !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      agent: false,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

async function json(server, method, path, options) {
  const r = await request(server, method, path, options);
  try {
    r.json = JSON.parse(r.body);
  } catch (e) {
    fail(`${method} ${path}: answer ${r.status} is not JSON: ${r.body.slice(0, 200)}`);
  }
  return r;
}

// An SSE body as its events: the parsed `data:` objects, and whether it ended with [DONE].
function sseEvents(body) {
  const events = [];
  let done = false;
  for (const block of body.split('\n\n')) {
    if (block === '') continue;
    check(block.startsWith('data: '), `not an SSE data event: ${block.slice(0, 80)}`);
    const data = block.slice(6);
    check(!done, 'an event after [DONE]');
    if (data === '[DONE]') done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}

// The expected error object of a refusal.
function checkError(r, status, what) {
  check(r.status === status, `${what}: status ${r.status}, expected ${status}: ${r.body.slice(0, 300)}`);
  const e = r.json && r.json.error;
  check(e && typeof e.message === 'string' && e.message.length > 0 && typeof e.type === 'string',
        `${what}: no OpenAI-style error object: ${r.body.slice(0, 300)}`);
  check('param' in e && 'code' in e, `${what}: the error object lacks param/code: ${r.body}`);
  return e;
}

async function metrics(server, headers = {}) {
  const r = await request(server, 'GET', '/metrics', { headers });
  check(r.status === 200, `/metrics: ${r.status} ${r.body.slice(0, 200)}`);
  const values = {};
  for (const line of r.body.split('\n')) {
    const m = /^(gptoss_[a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) values[m[1]] = Number(m[2]);
  }
  return values;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs `main` and exits non-zero with the message on any failure; the server is stopped hard.
function run(main) {
  const servers = [];
  const track = (s) => (servers.push(s), s);
  main(track).then(() => process.exit(0), (e) => {
    console.error(`FAIL: ${e.stack || e}`);
    for (const s of servers) {
      console.error(`--- server log ---\n${s.log()}`);
      s.proc.kill('SIGKILL');
    }
    process.exit(1);
  });
}

module.exports = { startServer, stopServer, request, json, sseEvents, checkError, metrics, check, fail, sleep, run };
