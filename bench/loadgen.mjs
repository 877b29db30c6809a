// loadgen.mjs: the load generator of `vlrun serve` (bench/README.md, "loadgen"). N concurrent
// clients, each sending a fixed number of streamed greedy chat completions through the official
// openai client: one-page requests (examples/page.png, 128 tokens out) and, every K-th, a
// 28-page request (the same page 28 times). Reports aggregate output tok/s, time to first token
// and per-token latency (p50/p99), errors by HTTP status, and from /metrics the peak device
// memory, the KV pool and the largest queue seen: one JSON object on stdout (or --out FILE).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as lib from '../tests/server_lib.mjs';

const USAGE = `usage: node bench/loadgen.mjs --url http://HOST:PORT [options]
  --clients N          concurrent clients (default 1)
  --requests N         requests per client (default 4)
  --long-every K       every K-th request of a client is the long one (default 0: never)
  --pages N            images in the long request (default 28)
  --max-tokens N       tokens out of the one-page request (default 128)
  --long-max-tokens N  tokens out of the long request (default 128)
  --image FILE         the page (default examples/page.png)
  --api-key KEY        sent as Authorization: Bearer KEY (default: $VLRUN_API_KEY)
  --timeout-s S        per-request limit (default 600)
  --out FILE           write the JSON there instead of stdout`;

function parseArgs(argv) {
    const o = { clients: 1, requests: 4, longEvery: 0, pages: 28, maxTokens: 128,
        longMaxTokens: 128, image: path.join(lib.ROOT, 'examples/page.png'),
        apiKey: process.env.VLRUN_API_KEY || 'unused', timeoutS: 600 };
    const num = { '--clients': 'clients', '--requests': 'requests', '--long-every': 'longEvery',
        '--pages': 'pages', '--max-tokens': 'maxTokens', '--long-max-tokens': 'longMaxTokens',
        '--timeout-s': 'timeoutS' };
    const str = { '--url': 'url', '--image': 'image', '--api-key': 'apiKey', '--out': 'out' };
    for (let i = 0; i < argv.length; i += 2) {
        const [k, v] = [argv[i], argv[i + 1]];
        if (k in num && /^\d+$/.test(v || '')) o[num[k]] = Number(v);
        else if (k in str && v !== undefined) o[str[k]] = v;
        else throw new Error(`bad option ${k} ${v ?? ''}\n${USAGE}`);
    }
    if (!o.url || o.clients < 1 || o.requests < 1) throw new Error(USAGE);
    return o;
}

// Nearest-rank percentile of an unsorted list (null when empty).
function pct(xs, p) {
    if (!xs.length) return null;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const summary = (xs) => ({ p50: pct(xs, 50), p99: pct(xs, 99), n: xs.length });

// One streamed request: its times and tokens, or its error (HTTP status, 0 without one).
async function oneRequest(client, body, timeoutS) {
    const t0 = performance.now();
    const rec = { long: body.long, ok: false, tokens: 0, ttft: null, gaps: [] };
    try {
        const s = await client.chat.completions.create(body.request, { timeout: timeoutS * 1000 });
        let last = null;
        for await (const c of s) {
            if (c.usage) rec.tokens = c.usage.completion_tokens;
            const d = c.choices[0] && c.choices[0].delta;
            if (!d || !d.content) continue;
            const now = performance.now();
            if (last === null) rec.ttft = (now - t0) / 1000;
            else rec.gaps.push((now - last) / 1000);
            last = now;
        }
        rec.ok = true;
    } catch (e) {
        rec.status = e.status || 0;
        rec.error = String(e.message || e).slice(0, 200);
    }
    rec.seconds = (performance.now() - t0) / 1000;
    return rec;
}

function requests(o) {
    const url = lib.dataUrl(o.image);
    const make = (n, maxTokens, long) => ({ long, request: { model: 'vlrun', temperature: 0,
        max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: [
            ...Array.from({ length: n }, () => ({ type: 'image_url', image_url: { url } })),
            { type: 'text', text: n > 1 ? 'Summarize these pages.' : 'What is on this page?' }] }] } });
    return { one: make(1, o.maxTokens, false), long: make(o.pages, o.longMaxTokens, true) };
}

// Polls /metrics while the run lasts: the largest queue and running count seen.
function watchMetrics(url, headers) {
    const seen = { max_queue_length: 0, max_running: 0 };
    let stop = false;
    const loop = (async () => {
        while (!stop) {
            try {
                const m = await lib.metrics(url, headers);
                seen.max_queue_length = Math.max(seen.max_queue_length, m.vlrun_queue_length || 0);
                seen.max_running = Math.max(seen.max_running, m.vlrun_running_sequences || 0);
            } catch { /* a busy server answers the next poll */ }
            await new Promise((r) => setTimeout(r, 500));
        }
    })();
    return async () => { stop = true; await loop; return seen; };
}

// The engine's decode steps during the run, from /metrics before (m0) and after (m): the
// aggregate decode rate is their tokens over their wall time (prefill chunks excluded).
function decodeOf(m0, m) {
    const d = (k) => (m[k] ?? 0) - (m0[k] ?? 0);
    const tokens = d('vlrun_decode_tokens_total'), seconds = d('vlrun_decode_seconds_total');
    const steps = d('vlrun_decode_steps_total');
    return { decode_tokens: tokens, decode_seconds: seconds,
        decode_tok_s: seconds > 0 ? tokens / seconds : null,
        mean_decode_rows: steps > 0 ? tokens / steps : null,
        prefill_seconds: d('vlrun_prefill_seconds_total') };
}

function report(o, recs, wallS, seen, m0, m) {
    const ok = recs.filter((r) => r.ok);
    const errors = {};
    for (const r of recs) if (!r.ok) errors[r.status] = (errors[r.status] || 0) + 1;
    const tokens = ok.reduce((a, r) => a + r.tokens, 0);
    return {
        clients: o.clients, requests_per_client: o.requests, long_every: o.longEvery,
        pages: o.pages, max_tokens: o.maxTokens, long_max_tokens: o.longMaxTokens,
        image: path.basename(o.image), wall_s: wallS,
        requests: recs.length, ok: ok.length, errors_by_status: errors,
        error_samples: recs.filter((r) => !r.ok).slice(0, 5).map((r) => r.error),
        output_tokens: tokens, output_tok_s: tokens / wallS,
        ttft_s: summary(ok.map((r) => r.ttft).filter((x) => x !== null)),
        ttft_one_page_s: summary(ok.filter((r) => !r.long && r.ttft !== null).map((r) => r.ttft)),
        ttft_long_s: summary(ok.filter((r) => r.long && r.ttft !== null).map((r) => r.ttft)),
        per_token_s: summary(ok.flatMap((r) => r.gaps)),
        server: { peak_device_bytes: m.vlrun_peak_device_bytes ?? null,
            kv_bytes_total: (m.vlrun_kv_bytes_used ?? 0) + (m.vlrun_kv_bytes_free ?? 0),
            kv_blocks_total: m.vlrun_kv_blocks_total ?? null, ...seen, ...decodeOf(m0, m) },
    };
}

async function main() {
    let o;
    try {
        o = parseArgs(process.argv.slice(2));
    } catch (e) {
        console.error(`loadgen: ${e.message}`);
        return 2;
    }
    const OpenAI = await lib.loadOpenAI();
    if (!OpenAI) {
        console.error('loadgen: the openai client is absent: run scripts/fetch_node_deps.sh');
        return lib.SKIP;
    }
    const client = new OpenAI({ baseURL: `${o.url}/v1`, apiKey: o.apiKey, maxRetries: 0 });
    const headers = { Authorization: `Bearer ${o.apiKey}` };
    const kinds = requests(o);
    const stopWatch = watchMetrics(o.url, headers);
    const m0 = await lib.metrics(o.url, headers);
    const t0 = performance.now();
    const perClient = await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
        const recs = [];
        for (let r = 0; r < o.requests; r++) {
            const long = o.longEvery > 0 && (r + c) % o.longEvery === o.longEvery - 1;
            recs.push(await oneRequest(client, long ? kinds.long : kinds.one, o.timeoutS));
        }
        return recs;
    }));
    const wallS = (performance.now() - t0) / 1000;
    const seen = await stopWatch();
    const m = await lib.settledMetrics(o.url, headers);
    const out = report(o, perClient.flat(), wallS, seen, m0, m);
    const text = JSON.stringify(out, null, 2) + '\n';
    if (o.out) writeFileSync(o.out, text);
    else process.stdout.write(text);
    return 0;
}

process.exit(await main());
