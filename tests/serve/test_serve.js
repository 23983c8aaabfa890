// ctest serve_* (label serve): `gptoss serve` under mpirun, driven over real HTTP.
//
//   golden NP    the tiny golden model at NP ranks: /v1/completions with the reference prompt's
//                ids, greedy, returns the reference's 16 greedy ids; 16 requests at once (greedy
//                beside sampled, different lengths) each return what they return alone
//   api          the small model (full vocabulary): every route, chat and completions, streamed
//                and not, stop strings, usage, the API key, the bad-request matrix (each a 4xx
//                with an OpenAI error object, the server still serving), a stalled client cut off
//                after --timeout, a full server's 503 with
//                Retry-After, a client that disconnects frees its slot, /metrics, and the drain
//   load         32 concurrent clients, 4 requests each (streamed and not): every answer whole
//                and well-formed; prints requests/s and tokens/s
//
// Environment: GPTOSS (the binary), GOLDEN_MODEL, SMALL_MODEL, FIXTURE (h5_fixture), TEST_DATA.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const h = require('./harness.js');
const { check } = h;

const [, , CASE, NP_TEXT] = process.argv;
const NP = Number(NP_TEXT || 1);

function referenceIds(name) {
  const out = execFileSync(process.env.FIXTURE, ['ints', `${process.env.TEST_DATA}/tiny20/reference.h5`, name]);
  return out.toString().trim().split(',').map(Number);
}

async function complete(server, body) {
  const r = await h.json(server, 'POST', '/v1/completions', { body });
  check(r.status === 200, `completion: ${r.status} ${r.body.slice(0, 300)}`);
  return r.json;
}

async function golden(track) {
  const prompt = referenceIds('tokens'), greedy = referenceIds('greedy');
  const server = track(await h.startServer({ np: NP, model: process.env.GOLDEN_MODEL, args: ['--parallel', '6'] }));
  const greedyBody = { prompt, max_tokens: greedy.length, temperature: 0, return_token_ids: true };
  const alone = await complete(server, greedyBody);
  check(JSON.stringify(alone.choices[0].token_ids) === JSON.stringify(greedy),
        `greedy ids ${alone.choices[0].token_ids} differ from the reference ${greedy}`);
  check(alone.choices[0].finish_reason === 'length' && alone.usage.prompt_tokens === prompt.length &&
        alone.usage.completion_tokens === greedy.length, `usage/finish: ${JSON.stringify(alone)}`);
  // 16 requests: greedy ones of several prompt lengths, sampled ones with fixed seeds.
  const bodies = [];
  for (let i = 0; i < 16; i++) {
    const p = prompt.slice(0, 8 + 2 * i);
    bodies.push(i % 2 === 0 ? { prompt: p, max_tokens: 12, temperature: 0, return_token_ids: true }
                            : { prompt: p, max_tokens: 12, temperature: 0.9, top_p: 0.9, seed: 1000 + i,
                                return_token_ids: true });
  }
  const single = [];
  for (const b of bodies) single.push((await complete(server, b)).choices[0].token_ids);
  const together = await Promise.all(bodies.map((b) => complete(server, b)));
  together.forEach((r, i) => {
    check(JSON.stringify(r.choices[0].token_ids) === JSON.stringify(single[i]),
          `request ${i} (${bodies[i].temperature ? 'sampled' : 'greedy'}) gave ${r.choices[0].token_ids} beside ` +
          `15 others but ${single[i]} alone`);
  });
  const again = await Promise.all([complete(server, greedyBody), ...bodies.slice(1).map((b) => complete(server, b))]);
  check(JSON.stringify(again[0].choices[0].token_ids) === JSON.stringify(greedy), 'the reference prompt in a full batch');
  // Text needs a vocabulary that holds o200k_harmony: the golden model's 512 ids do not.
  const chat = await h.json(server, 'POST', '/v1/chat/completions', { body: { messages: [{ role: 'user', content: 'Hi' }] } });
  check(h.checkError(chat, 400, 'chat to the golden model').code === 'unsupported_model', `chat: ${chat.body}`);
  const text = await h.json(server, 'POST', '/v1/completions', { body: { prompt: 'Hi' } });
  check(h.checkError(text, 400, 'a text prompt to the golden model').code === 'unsupported_model', `text: ${text.body}`);
  const m = await h.metrics(server);
  check(m.gptoss_requests_finished_total === 1 + 16 + 16 + 16, `finished ${m.gptoss_requests_finished_total}`);
  check((await h.stopServer(server)) === 0, 'the drained server did not exit 0');
  console.log(`golden ${NP}: reference greedy ids exact; 16 requests batched equal alone`);
}

// Polls /metrics until `ready(values)` (at most 30 s).
async function waitFor(server, auth, ready, what) {
  for (const t0 = Date.now(); ;) {
    const m = await h.metrics(server, auth);
    if (ready(m)) return m;
    check(Date.now() - t0 < 30000, `${what}: ${JSON.stringify(m)}`);
    await h.sleep(20);
  }
}

const CHAT = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }] };

async function badRequests(server, auth) {
  const post = (path, body, headers = auth) => h.json(server, 'POST', path, { body, headers });
  const cases = [
    ['malformed JSON', () => post('/v1/chat/completions', '{"messages": [', auth), 400],
    ['not an object', () => post('/v1/chat/completions', '[1,2]'), 400],
    ['no messages', () => post('/v1/chat/completions', {}), 400],
    ['empty messages', () => post('/v1/chat/completions', { messages: [] }), 400],
    ['unknown role', () => post('/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }), 400],
    ['content of the wrong type', () => post('/v1/chat/completions', { messages: [{ role: 'user', content: 7 }] }), 400],
    ['temperature out of range', () => post('/v1/chat/completions', { ...CHAT, temperature: 9 }), 400],
    ['max_tokens 0', () => post('/v1/chat/completions', { ...CHAT, max_tokens: 0 }), 400],
    ['n = 2', () => post('/v1/chat/completions', { ...CHAT, n: 2 }), 400],
    ['a forced tool choice', () => post('/v1/chat/completions', { ...CHAT, tool_choice: 'required' }), 400],
    ['logprobs', () => post('/v1/chat/completions', { ...CHAT, logprobs: true }), 400],
    ['a tool result with no call', () => post('/v1/chat/completions',
        { messages: [{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'nope', content: '1' }] }), 400],
    ['a prompt longer than the context', () => post('/v1/completions', { prompt: Array(600).fill(1000) }), 400],
    ['completion prompt ids out of the vocabulary', () => post('/v1/completions', { prompt: [1, 999999999] }), 400],
    ['completion without a prompt', () => post('/v1/completions', { max_tokens: 3 }), 400],
    ['completion echo', () => post('/v1/completions', { prompt: 'a', echo: true }), 400],
    ['an unknown route', () => h.json(server, 'GET', '/v2/nothing', { headers: auth }), 404],
    ['the wrong method', () => h.json(server, 'GET', '/v1/chat/completions', { headers: auth }), 405],
    ['a body over --max-body', () => post('/v1/chat/completions', { ...CHAT, pad: 'x'.repeat(70000) }), 413],
    ['no API key', () => post('/v1/chat/completions', CHAT, {}), 401],
    ['a wrong API key', () => post('/v1/chat/completions', CHAT, { Authorization: 'Bearer wrong' }), 401],
  ];
  for (const [what, send, status] of cases) {
    const r = await send();
    const e = h.checkError(r, status, what);
    if (what === 'a prompt longer than the context') check(e.code === 'context_length_exceeded', `${what}: ${e.code}`);
    if (what === 'n = 2') check(e.param === 'n', `${what}: param ${e.param}`);
  }
  const big = 'x'.repeat(100000); // headers beyond libmicrohttpd's connection memory
  const r = await h.request(server, 'GET', '/v1/models', { headers: { ...auth, 'X-Big': big } });
  check(r.status === 431 || r.status === 413 || r.status === 414, `an oversize header: ${r.status}`);
  return cases.length; /* the oversize header is libmicrohttpd's answer, not counted in /metrics */
}

async function api(track) {
  const keyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gptoss-serve-')), 'key');
  fs.writeFileSync(keyFile, 'sk-test-123\n');
  const auth = { Authorization: 'Bearer sk-test-123' };
  const server = track(await h.startServer({
    np: NP, model: process.env.SMALL_MODEL,
    args: ['--parallel', '1', '--queue', '1', '--context', '512', '--api-key-file', keyFile, '--max-body', '65536',
           '--timeout', '3'] }));
  const health = await h.json(server, 'GET', '/health');
  check(health.status === 200 && health.json.status === 'ok', `health: ${health.body}`);
  const models = await h.json(server, 'GET', '/v1/models', { headers: auth });
  check(models.status === 200 && models.json.data[0].id === 'small.model', `models: ${models.body}`);

  // A chat, whole and streamed: same seed, same tokens, so the same usage.
  const chat = await h.json(server, 'POST', '/v1/chat/completions',
                            { body: { ...CHAT, max_tokens: 24, seed: 5 }, headers: auth });
  check(chat.status === 200 && chat.json.object === 'chat.completion', `chat: ${chat.body}`);
  const choice = chat.json.choices[0];
  check(choice.message.role === 'assistant' && ['stop', 'length', 'tool_calls'].includes(choice.finish_reason),
        `chat choice: ${JSON.stringify(choice)}`);
  check(chat.json.usage.completion_tokens >= 1 && chat.json.usage.completion_tokens <= 24, 'chat usage');
  check(!/<\|/.test(JSON.stringify(choice.message)), `harmony markup leaked: ${JSON.stringify(choice.message)}`);
  const streamed = await h.request(server, 'POST', '/v1/chat/completions',
      { body: { ...CHAT, max_tokens: 24, seed: 5, stream: true, stream_options: { include_usage: true } }, headers: auth });
  check(streamed.status === 200 && /text\/event-stream/.test(streamed.headers['content-type']), 'stream headers');
  const { events, done } = h.sseEvents(streamed.body);
  check(done, 'the stream did not end with [DONE]');
  check(events[0].choices[0].delta.role === 'assistant', 'the first chunk carries the role');
  const usage = events[events.length - 1].usage;
  check(usage && usage.completion_tokens === chat.json.usage.completion_tokens,
        `streamed usage ${JSON.stringify(usage)} vs ${JSON.stringify(chat.json.usage)}`);
  const content = events.map((e) => (e.choices[0] && e.choices[0].delta.content) || '').join('');
  check(content === (choice.message.content || ''), `streamed content "${content}" vs "${choice.message.content}"`);

  // Completions: text, and a stop string cuts it (its text never contains the stop).
  const text = await h.json(server, 'POST', '/v1/completions',
                            { body: { prompt: 'Once upon a time', max_tokens: 30, temperature: 0 }, headers: auth });
  check(text.status === 200 && text.json.object === 'text_completion' && text.json.choices[0].text.length > 0,
        `completion: ${text.body}`);
  const full = text.json.choices[0].text;
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
  const cut = await h.json(server, 'POST', '/v1/completions',
      { body: { prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: [stop] }, headers: auth });
  check(cut.json.choices[0].text === full.slice(0, full.indexOf(stop)) && cut.json.choices[0].finish_reason === 'stop',
        `stop "${stop}": "${cut.json.choices[0].text}" from "${full}"`);

  const refused = await badRequests(server, auth);

  // A client that sends half a request and stalls is cut off after --timeout (3 s here).
  const stalledAt = Date.now();
  const closedAfter = await new Promise((resolve, reject) => {
    const socket = require('node:net').connect(server.port, '127.0.0.1', () => {
      socket.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-123\r\n' +
                   'Content-Length: 100\r\n\r\n{"prompt"');
    });
    socket.on('data', () => {});
    socket.on('close', () => resolve(Date.now() - stalledAt));
    socket.on('error', () => {});
    setTimeout(() => reject(new Error('a stalled client was not cut off in 20 s')), 20000);
  });
  check(closedAfter >= 2500, `a stalled client was cut off after ${closedAfter} ms, before --timeout`);
  const after = await h.json(server, 'POST', '/v1/completions', { body: { prompt: 'Still', max_tokens: 2 }, headers: auth });
  check(after.status === 200, 'the server stopped serving after bad requests');

  // Full: one slot, one queue place; a third request gets a 503 with Retry-After.
  const long = { prompt: 'Count', max_tokens: 120, temperature: 0 };
  const first = h.request(server, 'POST', '/v1/completions', { body: long, headers: auth });
  const second = h.request(server, 'POST', '/v1/completions', { body: long, headers: auth });
  await waitFor(server, auth, (m) => m.gptoss_busy_slots === 1 && m.gptoss_queue_depth === 1,
                'the two requests never filled the slot and the queue');
  const third = await h.json(server, 'POST', '/v1/completions', { body: long, headers: auth });
  h.checkError(third, 503, 'a full server');
  check(third.headers['retry-after'] === '1', 'a 503 without Retry-After');
  check((await first).status === 200 && (await second).status === 200, 'the admitted requests did not finish');

  // A client that leaves mid-stream frees its slot: the next request runs at once.
  await new Promise((resolve, reject) => {
    const req = require('node:http').request(`${server.base}/v1/completions`, {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve(); });
    });
    req.on('error', (e) => (e.code === 'ECONNRESET' ? resolve() : reject(e)));
    req.end(JSON.stringify({ prompt: 'Go on', max_tokens: 450, stream: true }));
  });
  const t0 = Date.now();
  let m = await h.metrics(server, auth);
  while (m.gptoss_busy_slots !== 0 && Date.now() - t0 < 5000) {
    await h.sleep(50);
    m = await h.metrics(server, auth);
  }
  check(m.gptoss_busy_slots === 0, `the slot of a client that left stayed busy: ${JSON.stringify(m)}`);
  const next = await h.json(server, 'POST', '/v1/completions', { body: { prompt: 'Next', max_tokens: 3 }, headers: auth });
  check(next.status === 200, 'the request after a disconnect');
  check(m.gptoss_http_requests_rejected_total === refused + 1 /* the 503 */ && m.gptoss_generation_tokens_total > 0 &&
        m.gptoss_ready === 1, `metrics: ${JSON.stringify(m)}`);

  // The drain: a request in flight still finishes, the job exits 0.
  const inflight = h.json(server, 'POST', '/v1/completions', { body: { prompt: 'Last', max_tokens: 60 }, headers: auth });
  await waitFor(server, auth, (m) => m.gptoss_busy_slots === 1, 'the last request never started');
  const code = await h.stopServer(server);
  const last = await inflight;
  check(last.status === 200 && last.json.usage.completion_tokens === 60, `the request in flight at the drain: ${last.body}`);
  check(code === 0, `the drained server exited ${code}`);
  console.log(`api ${NP}: routes, chat, stream, completions, stop, ${refused + 1} refusals, a stalled client cut off, 503, disconnect, drain`);
}

async function load(track) {
  const server = track(await h.startServer({ np: NP, model: process.env.SMALL_MODEL,
                                             args: ['--parallel', '8', '--queue', '64', '--context', '256'] }));
  // Under the sanitizers (SERVE_SLOW=1, set by CMake) one request per client: the same 32-way
  // concurrency in a fifth of the time.
  const clients = 32, perClient = process.env.SERVE_SLOW === '1' ? 1 : 4;
  let tokens = 0;
  const t0 = Date.now();
  const client = async (c) => {
    for (let k = 0; k < perClient; k++) {
      const stream = (c + k) % 2 === 0;
      const body = { messages: [{ role: 'user', content: `Client ${c} asks ${k}` }], max_tokens: 8 + (c % 5), seed: c,
                     stream, stream_options: stream ? { include_usage: true } : undefined };
      const r = await h.request(server, 'POST', '/v1/chat/completions', { body });
      check(r.status === 200, `client ${c} request ${k}: ${r.status} ${r.body.slice(0, 200)}`);
      if (stream) {
        const { events, done } = h.sseEvents(r.body);
        check(done && events[events.length - 1].usage, `client ${c} request ${k}: an incomplete stream`);
        tokens += events[events.length - 1].usage.completion_tokens;
      } else {
        const j = JSON.parse(r.body);
        check(j.choices[0].finish_reason && j.usage.completion_tokens <= body.max_tokens, `client ${c}: ${r.body}`);
        tokens += j.usage.completion_tokens;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  const seconds = (Date.now() - t0) / 1000;
  check((await h.stopServer(server)) === 0, 'the drained server did not exit 0');
  console.log(`load ${NP}: ${clients * perClient} requests from ${clients} clients in ${seconds.toFixed(1)} s: ` +
              `${(clients * perClient / seconds).toFixed(2)} requests/s, ${(tokens / seconds).toFixed(1)} tokens/s`);
}

const cases = { golden, api, load };
if (!cases[CASE]) {
  console.error(`usage: test_serve.js ${Object.keys(cases).join('|')} [NP]`);
  process.exit(2);
}
h.run(cases[CASE]);
