// server_lib.mjs: what the `vlrun serve` client tests (tests/server_*.mjs) and the load generator
// (bench/loadgen.mjs) share: the pinned openai client from .cache/node, starting and stopping a
// server (its ready line on stderr, bounded waits), the CLI's greedy reference, images as data:
// URLs, the /metrics text, and a small pass/fail tally.
import { spawn, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SKIP = 77; // ctest's SKIP_RETURN_CODE for these tests
// The backend of the servers and CLI references: cpu (CI); VL_SERVE_BACKEND=cuda on a GPU
// (scripts/device.sh), where tokens must match on the tiny checkpoints as well.
export const BACKEND = process.env.VL_SERVE_BACKEND || 'cpu';

// The openai package fetched by scripts/fetch_node_deps.sh; null when it is absent.
export async function loadOpenAI() {
    const dir = process.env.VL_NODE_MODULES || path.join(ROOT, '.cache/node/node_modules');
    try {
        const mod = await import(pathToFileURL(path.join(dir, 'openai/index.mjs')).href);
        return mod.default;
    } catch {
        return null;
    }
}

// The client tests' start: the openai client, or a skip (exit SKIP) when it is absent; and
// what ctest passes them (tests/CMakeLists.txt: VLRUN, VL_FIXTURES, VL_TOKENIZER_DIR).
export async function requireOpenAI() {
    const OpenAI = await loadOpenAI();
    if (!OpenAI) {
        console.log('SKIP: the openai client is absent (scripts/fetch_node_deps.sh)');
        process.exit(SKIP);
    }
    return OpenAI;
}
export const VLRUN = process.env.VLRUN;
export const FIX = process.env.VL_FIXTURES;
export const TOK = `${process.env.VL_TOKENIZER_DIR}/small_tokenizer.json`;
export const IMG = `${FIX}/models/images`;

export function dataUrl(file) {
    const ext = path.extname(file).slice(1).toLowerCase();
    const mime = ext === 'jpg' ? 'image/jpeg' : `image/${ext}`;
    return `data:${mime};base64,${readFileSync(file).toString('base64')}`;
}

// Rejects when `ms` pass first: every wait of these tests is bounded.
export function within(ms, promise, what) {
    let timer;
    const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    });
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// Starts `VLRUN serve ARGS --port 0` and resolves once the ready line names the port:
// { url, proc, stderr(), exited } (exited: a promise of the exit code, or the signal's name).
export function startServer(vlrun, args, { readyMs = 30000 } = {}) {
    const proc = spawn(vlrun, ['serve', ...args, '--port', '0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig)));
    const ready = new Promise((resolve, reject) => {
        proc.stderr.on('data', (d) => {
            err += d;
            const m = /listening on (http:\/\/[^\s]+)/.exec(err);
            if (m) resolve({ url: m[1].replace(/\/$/, ''), line: err.split('\n')[0] });
        });
        exited.then((code) => reject(new Error(`vlrun serve exited (${code}): ${err.trim()}`)));
    });
    return within(readyMs, ready, 'vlrun serve ready line').then(
        (r) => ({ ...r, proc, exited, stderr: () => err }),
        (e) => {
            proc.kill('SIGKILL');
            throw e;
        },
    );
}

// SIGTERM, then the exit code (SIGKILL and an error after `ms`).
export async function stopServer(srv, ms = 20000) {
    srv.proc.kill('SIGTERM');
    try {
        return await within(ms, srv.exited, 'vlrun serve exit after SIGTERM');
    } catch (e) {
        srv.proc.kill('SIGKILL');
        throw e;
    }
}

// The CLI's greedy answer to the same request: its --json report (the reference for the
// server's text, finish_reason and usage).
export function cliGreedy(vlrun, args, { images = [], prompt, system, maxTokens }) {
    const argv = ['--backend', BACKEND, ...args, ...images, '--prompt', prompt];
    if (system !== undefined) argv.push('--system', system);
    argv.push('--max-tokens', String(maxTokens), '--stop-at-eos', '--greedy', '--json');
    return new Promise((resolve, reject) => {
        execFile(vlrun, argv, { maxBuffer: 64 << 20 }, (e, out, err) => {
            if (e) reject(new Error(`vlrun ${argv.join(' ')}: ${err}`));
            else resolve(JSON.parse(out));
        });
    });
}

// What the server should report for the CLI's stop_reason.
export const FINISH = { eos: 'stop', max_tokens: 'length' };

// /metrics as { 'name{labels}': value } (Prometheus text format, comments skipped).
export async function metrics(url, headers = {}) {
    const res = await fetch(`${url}/metrics`, { headers });
    if (res.status !== 200) throw new Error(`/metrics: HTTP ${res.status}`);
    const out = {};
    for (const line of (await res.text()).split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const sp = line.lastIndexOf(' ');
        out[line.slice(0, sp)] = Number(line.slice(sp + 1));
    }
    return out;
}

// /metrics once the engine has published the step that finished the last request: a client has
// its answer before the engine thread publishes that step's counters, so a read right after a
// run may lag one step; running and queued both 0 come only after the last step (10 s at most).
export async function settledMetrics(url, headers = {}) {
    const deadline = performance.now() + 10000;
    for (;;) {
        const m = await metrics(url, headers);
        if ((!m.vlrun_running_sequences && !m.vlrun_queue_length) || performance.now() > deadline)
            return m;
        await new Promise((r) => setTimeout(r, 20));
    }
}

// The user message of one request: its images (data: URLs) then its text.
export function userMessage(images, text) {
    const parts = images.map((f) => ({ type: 'image_url', image_url: { url: dataUrl(f) } }));
    return { role: 'user', content: [...parts, { type: 'text', text }] };
}

// A streamed completion collected: text, finish_reason, usage (with include_usage), chunks.
export async function collectStream(stream) {
    let text = '';
    let finish = null;
    let usage = null;
    let chunks = 0;
    for await (const c of stream) {
        chunks++;
        if (c.usage) usage = c.usage;
        const ch = c.choices && c.choices[0];
        if (!ch) continue;
        if (ch.delta && ch.delta.content) text += ch.delta.content;
        if (ch.finish_reason) finish = ch.finish_reason;
    }
    return { text, finish, usage, chunks };
}

// Pass/fail tally: check(name, cond, detail) prints FAIL lines; done() gives the exit code.
export function tally() {
    let pass = 0;
    let fail = 0;
    return {
        check(name, cond, detail = '') {
            if (cond) pass++;
            else {
                fail++;
                console.error(`FAIL: ${name}${detail ? ': ' + detail : ''}`);
            }
            return cond;
        },
        done() {
            console.log(`${pass} passed, ${fail} failed`);
            return fail === 0 ? 0 : 1;
        },
    };
}
