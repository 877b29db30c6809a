// server_concurrency.mjs: `vlrun serve` under concurrent clients (CPU backend, tiny-a, a small
// KV pool from --mem-budget, --max-batch 4 so that requests queue), through the openai client:
//   - 16 requests at once with 0 to 3 images each (streamed and not) give each its answer when
//     sent alone, while one request over the pool is refused with 400 invalid_request_error;
//   - a client that aborts mid-stream (AbortController) has its request cancelled and its blocks
//     freed: /metrics shows every block free once idle, fewer tokens than it asked for counted;
//   - 200 connections at once to /health and /v1/models are all answered;
//   - SIGTERM during a stream: the stream ends cleanly, new requests are refused, exit 0.
// Every loop is bounded in count and time. Run by tests/server_node.sh.
import http from 'node:http';
import * as lib from './server_lib.mjs';

const OpenAI = await lib.requireOpenAI();
const { VLRUN, FIX, TOK, IMG } = lib;
const IMAGES = ['img_a_56x84.png', 'img_b_100x60.png', 'img_c_45x130.png'].map((f) => `${IMG}/${f}`);
// 14M: about 3800 tokens of KV pool once tiny-a's weights and scratch (images up to 200704 pixels,
// 4 decode rows) are planned: below the context (32768), above the 2000-token stream below
const MEM_BUDGET = '14M';
const t = lib.tally();

const srv = await lib.startServer(VLRUN, ['--backend', 'cpu', '--model', `${FIX}/models/tiny-a`,
    '--tokenizer', TOK, '--max-pixels', '200704', '--mem-budget', MEM_BUDGET, '--max-batch', '4',
    '--grace-seconds', '60']);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0,
    timeout: 60000 });
const limit = Number((/max request (\d+) tokens/.exec(srv.line) || [])[1]);
t.check('ready line: max request tokens', limit > 2100 && limit < 32768, srv.line);

// Request i: i % 4 images (rotating through the three), its own text and token count.
function request(i) {
    const images = Array.from({ length: i % 4 }, (_, k) => IMAGES[(i + k) % 3]);
    return {
        model: 'tiny', temperature: 0, max_tokens: 4 + (i % 5) * 2,
        messages: [lib.userMessage(images, `Request ${i}: what do you see?`)],
    };
}

async function answer(body, stream) {
    if (!stream) {
        const r = await client.chat.completions.create(body);
        return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason,
            tokens: r.usage.completion_tokens };
    }
    const s = await client.chat.completions.create({ ...body, stream: true,
        stream_options: { include_usage: true } });
    const g = await lib.collectStream(s);
    return { text: g.text, finish: g.finish, tokens: g.usage && g.usage.completion_tokens };
}

async function overBudget() {
    try {
        await client.chat.completions.create({ ...request(1), max_tokens: limit });
        return 'answered';
    } catch (e) {
        return e;
    }
}

async function sixteenAtOnce() {
    const alone = [];
    for (let i = 0; i < 16; i++) alone.push(await answer(request(i), false));
    const [together, refused] = await Promise.all([
        Promise.all(Array.from({ length: 16 }, (_, i) => answer(request(i), i % 2 === 1))),
        overBudget(),
    ]);
    for (let i = 0; i < 16; i++)
        t.check(`request ${i} (${i % 4} images) together = alone`,
            JSON.stringify(together[i]) === JSON.stringify(alone[i]) && alone[i].tokens > 0,
            `${JSON.stringify(together[i])} vs ${JSON.stringify(alone[i])}`);
    t.check('over the pool: 400 invalid_request_error', refused.status === 400 &&
        refused.error && refused.error.type === 'invalid_request_error' &&
        /\d/.test(refused.message), String(refused.message || refused));
}

async function idleMetrics() {
    for (let i = 0; i < 100; i++) {
        const m = await lib.metrics(srv.url);
        if (m.vlrun_running_sequences === 0 && m.vlrun_queue_length === 0 &&
            m.vlrun_kv_blocks_free === m.vlrun_kv_blocks_total)
            return m;
        await new Promise((r) => setTimeout(r, 100));
    }
    return lib.metrics(srv.url);
}

async function abortMidStream() {
    const before = await idleMetrics();
    const ask = 2000;
    const ctl = new AbortController();
    // sampled from the random model's near-uniform distribution (seeded): no end of turn for
    // hundreds of tokens, so the request is still running when the client aborts (greedy may
    // end at the end of turn before the metrics are read)
    const s = await client.chat.completions.create({ ...request(2), max_tokens: ask, stream: true,
        temperature: 1, seed: 11 }, { signal: ctl.signal });
    let chunks = 0;
    let during = null;
    let finished = false;
    try {
        for await (const c of s) {
            if (c.choices[0] && c.choices[0].finish_reason) finished = true;
            // chunk 8: /metrics lags the engine by up to one step (published after each), and
            // one step may stream two pieces (a prompt's last prefill chunk, then a decode step)
            if (++chunks === 8) {
                during = await lib.metrics(srv.url);
                ctl.abort();
            }
        }
    } catch (e) {
        // the client ends the iteration quietly or with its abort error
        if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') throw e;
    }
    const ended = finished ? 'finished' : ctl.signal.aborted ? 'aborted' : 'closed early';
    t.check('abort: the stream was cut mid-way', ended === 'aborted', ended);
    t.check('abort: blocks held while streaming', during &&
        during.vlrun_kv_blocks_free < during.vlrun_kv_blocks_total &&
        during.vlrun_running_sequences >= 1, JSON.stringify(during));
    const after = await idleMetrics();
    t.check('abort: every block free once idle', after.vlrun_kv_blocks_free ===
        after.vlrun_kv_blocks_total && after.vlrun_kv_blocks_total > 0 &&
        after.vlrun_running_sequences === 0, JSON.stringify(after));
    const generated = after.vlrun_completion_tokens_total - before.vlrun_completion_tokens_total;
    t.check('abort: cancelled before its token limit', generated < ask, `${generated} tokens`);
    // decode steps ran, none as a recorded graph: the CPU backend has none
    t.check('metrics: decode graphs counted, none on the CPU',
        after.vlrun_decode_steps_total > 0 && after.vlrun_decode_graphs_recorded_total === 0 &&
        after.vlrun_decode_graph_seconds_total === 0, JSON.stringify(after));
}

// One GET on its own connection: { status, body } or { error }.
function get(p) {
    return new Promise((resolve) => {
        const rq = http.get(`${srv.url}${p}`, { agent: false }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        rq.on('error', (e) => resolve({ error: e.message }));
    });
}

async function manyConnections() {
    const paths = Array.from({ length: 200 }, (_, i) => (i % 2 ? '/v1/models' : '/health'));
    const res = await lib.within(30000, Promise.all(paths.map(get)), '200 connections');
    const bad = res.filter((r, i) => {
        if (r.status !== 200) return true;
        const j = JSON.parse(r.body);
        return paths[i] === '/health' ? j.status !== 'ok' : !(j.data && j.data.length >= 1);
    });
    t.check('200 connections at once: all answered', bad.length === 0,
        `${bad.length} not: ${JSON.stringify(bad.slice(0, 3))}`);
}

async function sigtermDuringStream() {
    const s = await client.chat.completions.create({ ...request(3), max_tokens: 1000,
        stream: true, stream_options: { include_usage: true } });
    const it = s[Symbol.asyncIterator]();
    const first = await it.next();
    srv.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    let refused;
    try {
        await client.chat.completions.create(request(0));
        refused = 'answered';
    } catch (e) {
        refused = e.status === 503 || e instanceof OpenAI.APIConnectionError ? 'refused' : e;
    }
    t.check('SIGTERM: new requests refused (503 or no connection)', refused === 'refused',
        String(refused && refused.message ? refused.message : refused));
    let finish = null;
    let usage = null;
    for (let c = first; !c.done; c = await it.next()) {
        if (c.value.usage) usage = c.value.usage;
        if (c.value.choices[0] && c.value.choices[0].finish_reason)
            finish = c.value.choices[0].finish_reason;
    }
    t.check('SIGTERM: the running stream completes', finish === 'length' && usage &&
        usage.completion_tokens === 1000, `${finish} ${JSON.stringify(usage)}`);
    const code = await lib.within(90000, srv.exited, 'exit after SIGTERM');
    t.check('SIGTERM: exit 0', code === 0, `${code}: ${srv.stderr().slice(-500)}`);
}

try {
    await sixteenAtOnce();
    await abortMidStream();
    await manyConnections();
    await sigtermDuringStream();
} finally {
    srv.proc.kill('SIGKILL'); // no-op once it has exited; a failed step leaves no server behind
}
process.exit(t.done());
