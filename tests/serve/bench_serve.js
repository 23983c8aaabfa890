// A measurement, not a test: requests/s, generated tokens/s and latency of `gptoss serve` at
// several client concurrencies. Each concurrency runs C clients that each send R streamed
// /v1/completions requests back to back (a short text prompt, seeded sampling, max_tokens fixed);
// latency is a whole request's.
//
//   GPTOSS=build/gptoss node tests/serve/bench_serve.js --model M [--np 1] [--threads 2]
//       [--parallel 8] [--concurrency 1,2,4,8] [--requests 4] [--max-tokens 64] [--json]
'use strict';
const h = require('./harness.js');

function options() {
  const o = { model: null, np: 1, threads: 0, parallel: 8, concurrency: [1, 2, 4, 8], requests: 4, maxTokens: 64,
              json: false };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--model') o.model = v, i++;
    else if (a === '--np') o.np = Number(v), i++;
    else if (a === '--threads') o.threads = Number(v), i++;
    else if (a === '--parallel') o.parallel = Number(v), i++;
    else if (a === '--concurrency') o.concurrency = v.split(',').map(Number), i++;
    else if (a === '--requests') o.requests = Number(v), i++;
    else if (a === '--max-tokens') o.maxTokens = Number(v), i++;
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.model) throw new Error('--model is required');
  return o;
}

async function oneRequest(server, client, k, maxTokens) {
  const t0 = process.hrtime.bigint();
  const body = { prompt: `Client ${client}, question ${k}: tell me a story.`, max_tokens: maxTokens,
                 seed: 1000 * client + k, stream: true, stream_options: { include_usage: true } };
  const r = await h.request(server, 'POST', '/v1/completions', { body });
  h.check(r.status === 200, `request: ${r.status} ${r.body.slice(0, 200)}`);
  const { events, done } = h.sseEvents(r.body);
  h.check(done, 'an incomplete stream');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, tokens: events[events.length - 1].usage.completion_tokens };
}

async function main(track) {
  const o = options();
  const args = ['--parallel', String(o.parallel), '--queue', '256'];
  if (o.threads) args.push('--threads', String(o.threads));
  // Open MPI binds each of up to 2 ranks to one core by default, which would squeeze --threads
  // onto it: the benchmark leaves placement to the engine.
  const server = track(await h.startServer({ np: o.np, model: o.model, args, mpirunArgs: ['--bind-to', 'none'] }));
  const rows = [];
  for (const c of o.concurrency) {
    const t0 = Date.now();
    const latencies = [];
    let tokens = 0;
    await Promise.all(Array.from({ length: c }, async (_, client) => {
      for (let k = 0; k < o.requests; k++) {
        const r = await oneRequest(server, client, k, o.maxTokens);
        latencies.push(r.seconds);
        tokens += r.tokens;
      }
    }));
    const seconds = (Date.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const row = { concurrency: c, requests: c * o.requests, seconds, requests_per_second: c * o.requests / seconds,
                  tokens_per_second: tokens / seconds, latency_p50: latencies[Math.floor(latencies.length / 2)],
                  latency_max: latencies[latencies.length - 1] };
    rows.push(row);
    if (!o.json) {
      console.log(`concurrency ${c}: ${row.requests} requests in ${seconds.toFixed(1)} s, ` +
                  `${row.requests_per_second.toFixed(2)} req/s, ${row.tokens_per_second.toFixed(1)} tok/s, ` +
                  `latency p50 ${row.latency_p50.toFixed(2)} s, max ${row.latency_max.toFixed(2)} s`);
    }
  }
  h.check((await h.stopServer(server)) === 0, 'the server did not drain to exit 0');
  if (o.json) console.log(JSON.stringify({ model: o.model, np: o.np, parallel: o.parallel, max_tokens: o.maxTokens, rows }));
}

h.run(main);
