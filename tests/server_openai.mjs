// server_openai.mjs: the official openai npm client against `vlrun serve` (CPU backend, tiny
// checkpoints, 127.0.0.1, a free port). Greedy chat completions, streamed and not, with images
// sent as data: URLs (examples/page.png and the fixture images) give the CLI's greedy output for
// the same request: the same text, finish_reason "length" / "stop" for the CLI's stop_reason
// max_tokens / eos, and usage equal to the CLI's prompt and generated token counts. A
// conversation's prompt (system, user, assistant, user) has the token count of the chat
// template written out here and tokenized by `vlrun tokenize`. Run by tests/server_node.sh.
import { execFileSync } from 'node:child_process';
import * as lib from './server_lib.mjs';

const OpenAI = await lib.requireOpenAI();
const { VLRUN, FIX, TOK, IMG } = lib;
const PAGE = `${lib.ROOT}/examples/page.png`;
// a page of 247 image tokens instead of 1364: the same path through the engine, seconds less
const PIXELS = ['--max-pixels', '200704'];
const t = lib.tally();

// One case: the request through the server (stream or not) against the CLI's greedy run.
async function greedyCase(client, model, name, { images, prompt, system, maxTokens, stream }) {
    const args = ['--model', `${FIX}/models/${model}`, '--tokenizer', TOK, ...PIXELS];
    const want = await lib.cliGreedy(VLRUN, args, { images, prompt, system, maxTokens });
    const messages = system === undefined ? [] : [{ role: 'system', content: system }];
    messages.push(lib.userMessage(images, prompt));
    const body = { model: 'tiny', messages, max_tokens: maxTokens, temperature: 0 };
    let got;
    if (stream) {
        const s = await client.chat.completions.create({
            ...body,
            stream: true,
            stream_options: { include_usage: true },
        });
        got = await lib.collectStream(s);
        t.check(`${name}: several chunks`, got.chunks > 2, `${got.chunks}`);
    } else {
        const r = await client.chat.completions.create(body);
        const c = r.choices[0];
        got = { text: c.message.content, finish: c.finish_reason, usage: r.usage };
        t.check(`${name}: response shape`, r.object === 'chat.completion' &&
            /^chatcmpl-/.test(r.id) && c.index === 0 && c.message.role === 'assistant' &&
            r.model === 'tiny', JSON.stringify(r).slice(0, 300));
    }
    t.check(`${name}: text`, got.text === want.text,
        `server ${JSON.stringify(got.text)} CLI ${JSON.stringify(want.text)}`);
    t.check(`${name}: finish_reason`, got.finish === lib.FINISH[want.stop_reason],
        `${got.finish} for the CLI's ${want.stop_reason}`);
    const u = got.usage || {};
    t.check(`${name}: usage`, u.prompt_tokens === want.prompt_tokens &&
        u.completion_tokens === want.generated_tokens &&
        u.total_tokens === want.prompt_tokens + want.generated_tokens,
        `${JSON.stringify(u)}; CLI prompt ${want.prompt_tokens} generated ${want.generated_tokens}`);
    return want;
}

async function serve(model, fn) {
    const srv = await lib.startServer(VLRUN, ['--backend', lib.BACKEND, '--model',
        `${FIX}/models/${model}`, '--tokenizer', TOK, ...PIXELS]);
    t.check(`${model}: listens on 127.0.0.1`, srv.url.startsWith('http://127.0.0.1:'), srv.url);
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0,
        timeout: 60000 });
    try {
        await fn(client, srv);
    } finally {
        const code = await lib.stopServer(srv);
        t.check(`${model}: exit 0 after SIGTERM`, code === 0, `${code}: ${srv.stderr()}`);
    }
}

// The chat template of Qwen2-VL written out (no images), for `vlrun tokenize`.
function templateTokens(messages) {
    let s = '';
    for (const m of messages) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
    s += '<|im_start|>assistant\n';
    const ids = execFileSync(VLRUN, ['tokenize', '--tokenizer', TOK, '--', s]).toString();
    return ids.trim().split(/\s+/).length;
}

const golden = [`${IMG}/img_a_56x84.png`, `${IMG}/img_b_100x60.png`,
    `${IMG}/img_c_45x130.png`, `${IMG}/img_a_56x84.png`];
const goldenPrompt =
    'Describe these pictures.\nWhat differs between\tthem?\n  Answer briefly: 1, 2, 3 — ok?';

await serve('tiny-a', async (client) => {
    const models = await client.models.list();
    t.check('models.list', models.data.length >= 1 && models.data[0].object === 'model',
        JSON.stringify(models.data));
    const page = { images: [PAGE], prompt: 'What is on this page?', maxTokens: 16 };
    await greedyCase(client, 'tiny-a', 'page', { ...page, stream: false });
    await greedyCase(client, 'tiny-a', 'page streamed', { ...page, stream: true });
    const four = { images: golden, prompt: goldenPrompt, maxTokens: 24 };
    await greedyCase(client, 'tiny-a', 'four images', { ...four, stream: false });
    await greedyCase(client, 'tiny-a', 'four images streamed', { ...four, stream: true });
    await greedyCase(client, 'tiny-a', 'system message', {
        images: [golden[2]], prompt: 'And this?', system: 'You answer in one word.',
        maxTokens: 8, stream: true,
    });
    // a conversation without images: its prompt is the template's, token for token
    const conv = [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Name a colour.' },
        { role: 'assistant', content: 'Blue.' },
        { role: 'user', content: [{ type: 'text', text: 'And another?' }] },
    ];
    const r = await client.chat.completions.create({ model: 'tiny', messages: conv,
        max_tokens: 5, temperature: 0 });
    const flat = conv.map((m) => ({ role: m.role,
        content: typeof m.content === 'string' ? m.content : m.content[0].text }));
    const want = templateTokens(flat);
    t.check('conversation: prompt tokens', r.usage.prompt_tokens === want,
        `${r.usage.prompt_tokens} vs the template's ${want}`);
    t.check('conversation: 5 tokens', r.usage.completion_tokens === 5 &&
        r.choices[0].finish_reason === 'length', JSON.stringify(r.choices[0]));
});

// tiny-eos answers the golden request with two tokens and <|im_end|>: finish_reason "stop"
await serve('tiny-eos', async (client) => {
    const eos = { images: golden, prompt: goldenPrompt, maxTokens: 8 };
    const w = await greedyCase(client, 'tiny-eos', 'end of turn', { ...eos, stream: false });
    t.check('tiny-eos: the CLI stops at eos', w.stop_reason === 'eos' && w.text === 'ReID',
        `${w.stop_reason} ${JSON.stringify(w.text)}`);
    await greedyCase(client, 'tiny-eos', 'end of turn streamed', { ...eos, stream: true });
});

process.exit(t.done());
