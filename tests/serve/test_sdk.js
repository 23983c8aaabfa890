// ctest serve_sdk_NP (label serve): the official OpenAI Node SDK (`openai` from npm) against
// `gptoss serve` on the small model at NP ranks: models.list, a plain chat, a streamed chat with
// usage, a chat that carries a tool call and its result back in (with tools declared), a legacy
// completion, and the SDK's own error classes for a 400 and a 401.
//
// Needs the package in NODE_PATH: .ci/run installs it (npm install --prefix build/npm openai);
// exit 77 (skipped, saying so) where it is not installed.
'use strict';
const h = require('./harness.js');
const { check } = h;

let OpenAI;
try {
  OpenAI = require('openai').OpenAI;
} catch (e) {
  console.log('SKIP: the openai npm package is not installed (npm install --prefix build/npm openai; .ci/run does)');
  process.exit(77);
}

const NP = Number(process.argv[2] || 1);
const KEY = 'sk-sdk-test';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

async function main(track) {
  const server = track(await h.startServer({ np: NP, model: process.env.SMALL_MODEL,
                                             args: ['--parallel', '2', '--context', '512', '--api-key', KEY] }));
  const client = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: KEY, maxRetries: 0 });

  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === 'small.model', `models: ${JSON.stringify(models.data)}`);

  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' }];
  const plain = await client.chat.completions.create({ model: 'small.model', messages, max_tokens: 16, seed: 3 });
  check(plain.object === 'chat.completion' && plain.choices.length === 1, `chat: ${JSON.stringify(plain)}`);
  check(plain.choices[0].message.role === 'assistant' && plain.usage.completion_tokens <= 16, 'chat message/usage');

  const stream = await client.chat.completions.create({ model: 'small.model', messages, max_tokens: 16, seed: 3,
                                                        stream: true, stream_options: { include_usage: true } });
  let content = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      content += c.delta.content || '';
      finish = c.finish_reason || finish;
    }
  }
  check(chunks >= 2 && finish !== null, `stream: ${chunks} chunks, finish ${finish}`);
  check(usage && usage.completion_tokens === plain.usage.completion_tokens, `stream usage ${JSON.stringify(usage)}`);
  check(content === (plain.choices[0].message.content || ''), `streamed "${content}" vs "${plain.choices[0].message.content}"`);

  // A conversation that went through a tool call: the call and its result go back in.
  const withTool = await client.chat.completions.create({
    model: 'small.model', max_tokens: 8, tools: [WEATHER_TOOL], tool_choice: 'auto',
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 18}' },
    ],
  });
  check(withTool.choices[0].message.role === 'assistant' &&
        withTool.usage.prompt_tokens > plain.usage.prompt_tokens, `tool round trip: ${JSON.stringify(withTool)}`);

  const legacy = await client.completions.create({ model: 'small.model', prompt: 'The sky is', max_tokens: 5,
                                                   temperature: 0 });
  check(legacy.object === 'text_completion' && typeof legacy.choices[0].text === 'string' &&
        legacy.usage.completion_tokens === 5, `completion: ${JSON.stringify(legacy)}`);

  try {
    await client.chat.completions.create({ model: 'small.model', messages, n: 2 });
    h.fail('n = 2 was accepted');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.status === 400 && /n/.test(e.message), `n = 2: ${e}`);
  }
  try {
    await new OpenAI({ baseURL: `${server.base}/v1`, apiKey: 'sk-wrong', maxRetries: 0 }).models.list();
    h.fail('a wrong key was accepted');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401, `wrong key: ${e}`);
  }
  check((await h.stopServer(server)) === 0, 'the drained server did not exit 0');
  console.log(`sdk ${NP}: models, chat, stream, tool round trip, completion, 400 and 401 as the SDK's errors`);
}

h.run(main);
