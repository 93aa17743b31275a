import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  createSandbox,
  type Sandbox,
  SandboxCompileError,
  SandboxMemoryError,
  SandboxOutputError,
  SandboxScriptError,
  SandboxStackError,
  SandboxTimeoutError,
  SandboxUnavailableError,
} from "@opsplane/sandbox";

const MiB = 1024 * 1024;

/** Awaits a rejection and returns the error, typed as the expected class. */
async function rejection<T extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const error = await promise.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
  return error;
}

describe("sandbox", () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await createSandbox();
  });
  after(() => sandbox.close());

  test("compiles once and calls many times with JSON in and out", async () => {
    const script = await sandbox.compile("function extract(request) { return request.body.orderNo }", { entry: "extract" });
    for (const orderNo of ["A-1", "B-2", "C-3"]) {
      const result = await script.call({ method: "POST", path: "/cb", query: {}, headers: {}, body: { orderNo } });
      assert.deepEqual(result, { value: orderNo, logs: [] });
    }
    const roundTrip = await sandbox.compile("function main(x) { return { echo: x, n: [1, 2.5, null, true, 'é✓'] } }");
    const input = { a: [1, { b: "c" }], d: null, e: false };
    assert.deepEqual((await roundTrip.call(input)).value, { echo: input, n: [1, 2.5, null, true, "é✓"] });
  });

  test("globals persist between calls of one compiled script", async () => {
    const counter = await sandbox.compile("let calls = 0; function main() { return ++calls }");
    assert.equal((await counter.call(null)).value, 1);
    assert.equal((await counter.call(null)).value, 2);
  });

  test("an endless loop is stopped with an error naming the time limit, and the script works again", async () => {
    const script = await sandbox.compile("function main(spin) { while (spin) {} return 'done' }", { timeLimitMs: 50 });
    const error = await rejection(script.call(true), SandboxTimeoutError);
    assert.equal(error.kind, "timeout");
    assert.match(error.message, /time limit of 50 ms/);
    assert.equal((await script.call(false)).value, "done");
  });

  test("unbounded recursion is stopped with an error naming the stack limit, and the script works again", async () => {
    const script = await sandbox.compile(
      "function down(n) { return down(n + 1) + 1 }\nfunction main(deep) { return deep ? down(0) : 'done' }",
      {
        stackLimitBytes: 64 * 1024,
      },
    );
    const error = await rejection(script.call(true), SandboxStackError);
    assert.match(error.message, /stack limit of 64 KiB/);
    assert.equal((await script.call(false)).value, "done");
  });

  test("recursion through native code (toJSON inside JSON.stringify) is also stopped", async () => {
    const script = await sandbox.compile("function main() { const o = { toJSON() { return [o] } }; return JSON.stringify(o) }");
    await rejection(script.call(null), SandboxStackError);
    await rejection(script.call(null), SandboxStackError);
  });

  test("unbounded allocation is stopped with an error naming the memory limit, and the script works again", async () => {
    // A generous time limit, so the memory limit is what stops it.
    const script = await sandbox.compile(
      "const kept = [];\nfunction main(grow) { if (!grow) return kept.length; while (true) kept.push(String(kept.length).repeat(1000)) }",
      { memoryLimitBytes: 4 * MiB, timeLimitMs: 20_000 },
    );
    const error = await rejection(script.call(true), SandboxMemoryError);
    assert.match(error.message, /memory limit of 4 MiB/);
    // The runtime was rebuilt from the source: the array filled by the runaway call is gone.
    assert.equal((await script.call(false)).value, 0);
  });

  test("one allocation over the memory limit is a memory error too", async () => {
    const script = await sandbox.compile("function main() { return 'x'.repeat(8 * 1024 * 1024).length }", { memoryLimitBytes: 4 * MiB });
    await rejection(script.call(null), SandboxMemoryError);
  });

  test("large allocations between two heap samples are stopped at the memory limit, not run on until the time limit", async () => {
    // Ten thousand 100 KB strings fit between two interrupts: the heap sample alone saw them only past the time limit.
    const script = await sandbox.compile("function main() { const a = []; for (;;) a.push('x'.repeat(1e5)) }", {
      memoryLimitBytes: 16 * MiB,
      timeLimitMs: 200,
    });
    const error = await rejection(script.call(null), SandboxMemoryError);
    assert.match(error.message, /memory limit of 16 MiB/);
    await rejection(script.call(null), SandboxMemoryError);
  });

  test("a throwing script gives its message, line and stack", async () => {
    const script = await sandbox.compile(
      "function check(code) {\n  throw new RangeError('bad code ' + code)\n}\nfunction main(x) { return check(x) }",
    );
    const error = await rejection(script.call("E42"), SandboxScriptError);
    assert.equal(error.message, "RangeError: bad code E42");
    assert.equal(error.line, 2);
    assert.match(error.scriptStack ?? "", /at check \(script\.js:2/);
    const thrower = await sandbox.compile("function main() { throw { code: 7 } }");
    assert.match((await rejection(thrower.call(null), SandboxScriptError)).message, /non-Error value: \{"code":7\}/);
  });

  test("results that are not JSON are output errors; undefined reads as null", async () => {
    const script = await sandbox.compile(
      "function main(kind) { if (kind === 'fn') return () => 1; if (kind === 'cycle') { const o = {}; o.self = o; return o } if (kind === 'big') return 1n }",
    );
    assert.match((await rejection(script.call("fn"), SandboxOutputError)).message, /returned a function/);
    assert.match((await rejection(script.call("cycle"), SandboxOutputError)).message, /not JSON: TypeError: circular reference/);
    assert.match((await rejection(script.call("big"), SandboxOutputError)).message, /returned a bigint/);
    assert.deepEqual((await script.call("nothing")).value, null);
    const big = await sandbox.compile("function main() { return 'x'.repeat(2000) }", { maxOutputBytes: 1000 });
    assert.match((await rejection(big.call(null), SandboxOutputError)).message, /over the output limit of 1000 bytes/);
  });

  test("compile errors say where: syntax with line and column, missing entry, failing top-level code", async () => {
    const syntax = await rejection(sandbox.compile("let a = 1;\nfunction main() {\n  return a +* 2;\n}"), SandboxCompileError);
    assert.equal(syntax.line, 3);
    assert.equal(syntax.column, 13);
    assert.match(syntax.message, /^SyntaxError: .*\(line 3, column 13\)$/);
    const missing = await rejection(sandbox.compile("function other() {}", { entry: "extract" }), SandboxCompileError);
    assert.equal(missing.message, "script does not define a function named extract");
    const topLevel = await rejection(sandbox.compile("\nthrow new Error('no config')"), SandboxCompileError);
    assert.equal(topLevel.message, "Error: no config (line 2, column 16)");
    const looping = await rejection(sandbox.compile("while (true) {}", { timeLimitMs: 20 }), SandboxCompileError);
    assert.match(looping.message, /top-level code: script exceeded its time limit of 20 ms/);
    await assert.rejects(sandbox.compile("function main() {}", { timeLimitMs: 0 }), RangeError);
    await assert.rejects(sandbox.compile("function main() {}", { entry: "a; b" }), RangeError);
  });

  test("a script sees no host: no require, process, fetch, timers or WebAssembly; Date and Math.random work", async () => {
    const script = await sandbox.compile(
      "function main(names) { return Object.fromEntries(names.map((n) => [n, typeof globalThis[n]])) }\nfunction probe() {}",
    );
    const hostNames = [
      "require",
      "process",
      "fetch",
      "setTimeout",
      "setInterval",
      "queueMicrotask",
      "module",
      "Buffer",
      "WebAssembly",
      "std",
      "os",
      "emit",
    ];
    const seen = (await script.call(hostNames)).value as Record<string, string>;
    for (const name of hostNames) assert.equal(seen[name], "undefined", name);
    const clock = await sandbox.compile("function main() { return [typeof Date.now(), typeof Math.random(), new Date(0).toISOString()] }");
    assert.deepEqual((await clock.call(null)).value, ["number", "number", "1970-01-01T00:00:00.000Z"]);
  });

  test("console output is collected per call, capped, and kept on errors", async () => {
    const script = await sandbox.compile(
      "function main(n) { console.log('start', { n }); for (let i = 0; i < n; i++) console.warn(i); if (n > 5) throw new Error('too many'); return n }",
      { maxLogLines: 3 },
    );
    assert.deepEqual(await script.call(1), { value: 1, logs: ['start {"n":1}', "0"] });
    const error = await rejection(script.call(10), SandboxScriptError);
    assert.deepEqual(error.logs, ['start {"n":10}', "0", "1", "… 8 more lines not kept"]);
  });

  test("async entry functions are awaited", async () => {
    const script = await sandbox.compile("async function main(x) { await null; if (x < 0) throw new Error('negative'); return x * 2 }");
    assert.equal((await script.call(21)).value, 42);
    assert.match((await rejection(script.call(-1), SandboxScriptError)).message, /negative/);
  });

  test("deeply nested source is a stack error, not a crash", async () => {
    const script = await sandbox.compile("function main(depth) { return eval('['.repeat(depth) + ']'.repeat(depth)).length }");
    await rejection(script.call(1_000_000), SandboxStackError);
    assert.equal((await script.call(3)).value, 1);
  });

  test("disposed scripts refuse calls; calls already made complete", async () => {
    const script = await sandbox.compile("function main(x) { return x }");
    const pending = script.call("before");
    script.dispose();
    assert.equal((await pending).value, "before");
    await assert.rejects(script.call("after"), /disposed/);
  });
});

describe("memory-hungry calls one after another", () => {
  test("each is stopped as early as the first: the memory a stopped call leaves free does not let the next one run on", async () => {
    const sandbox = await createSandbox({ workers: 1 });
    try {
      // Counts its 100 KB strings in its log, which the memory error keeps. The time limit is out of reach.
      const script = await sandbox.compile(
        "function main() { const a = []; for (let i = 1; ; i++) { a.push('x'.repeat(1e5)); if (i % 10 === 0) console.log(i) } }",
        { memoryLimitBytes: 16 * MiB, timeLimitMs: 60_000, maxLogLines: 10_000 },
      );
      const allocatedMb: number[] = [];
      for (let i = 0; i < 6; i++) {
        const error = await rejection(script.call(null), SandboxMemoryError);
        allocatedMb.push(Number(error.logs.at(-1)) / 10);
      }
      // Each call used to start with all the memory the calls before it had taken and freed: 36, 61, 86 … MB.
      const [first] = allocatedMb;
      assert.ok(
        allocatedMb.every((mb) => mb <= first! * 1.25),
        `100 KB strings allocated before each call was stopped (MB): ${allocatedMb.join(", ")}`,
      );
    } finally {
      await sandbox.close();
    }
  });
});

describe("a worker that dies", () => {
  test("fails only the call that killed it; its scripts reload into a fresh worker", async () => {
    // A small native stack lets toJSON recursion exhaust it before QuickJS's own check trips.
    const sandbox = await createSandbox({ workers: 1, workerStackMb: 1 });
    try {
      const bystander = await sandbox.compile("let calls = 0; function main() { return ++calls }");
      assert.equal((await bystander.call(null)).value, 1);
      const killer = await sandbox.compile(
        "function main(deep) { const o = { toJSON() { return [o] } }; return deep ? JSON.stringify(o) : 'ok' }",
        {
          stackLimitBytes: 256 * 1024,
        },
      );
      const error = await rejection(killer.call(true), SandboxStackError);
      assert.match(error.message, /native stack/);
      assert.equal((await killer.call(false)).value, "ok");
      // Reloaded from source in the new worker, so its global state starts over.
      assert.equal((await bystander.call(null)).value, 1);
    } finally {
      await sandbox.close();
    }
  });
});

describe("a closed sandbox", () => {
  test("fails the calls it did not finish as unavailable, the sandbox's reason, never as an error of their script", async () => {
    const sandbox = await createSandbox({ workers: 1 });
    const script = await sandbox.compile("function main(ms) { const end = Date.now() + ms; while (Date.now() < end) {} return 'done' }", {
      timeLimitMs: 5_000,
    });
    const running = rejection(script.call(1_000), SandboxUnavailableError);
    const queued = rejection(script.call(0), SandboxUnavailableError);
    await sandbox.close();
    for (const error of [await running, await queued, await rejection(script.call(0), SandboxUnavailableError)]) {
      assert.equal(error.kind, "unavailable");
      assert.equal(error.message, "sandbox is closed");
    }
  });
});

describe("a flood of runaway calls", () => {
  test("a call with a wait limit that its worker cannot start in time is told so at that limit, not after the flood", async () => {
    const sandbox = await createSandbox({ workers: 1 });
    try {
      // Runs away on the input "spin", answers at once otherwise: 40 runaway calls hold the worker 2 s.
      const script = await sandbox.compile("function main(input) { if (input === 'spin') while (true) {} return input }", {
        timeLimitMs: 50,
      });
      const flood = Array.from({ length: 40 }, () =>
        script.call("spin", { waitLimitMs: 300 }).then(
          () => "done",
          (e: Error) => e,
        ),
      );
      const started = performance.now();
      const error = await rejection(script.call("order-1", { waitLimitMs: 300 }), SandboxUnavailableError);
      const waited = performance.now() - started;
      assert.equal(error.message, "the sandbox is busy: the call did not start within 300 ms");
      assert.ok(waited < 1_000, `told after ${Math.round(waited)} ms; the flood holds the worker about 2,000 ms`);
      const outcomes = await Promise.all(flood);
      const ran = outcomes.filter((o) => o instanceof SandboxTimeoutError).length;
      // Those past their wait limit were never run: the worker is free again long before 40 × 50 ms.
      assert.ok(ran < 20, `${ran} of the 40 runaway calls ran`);
      assert.ok(outcomes.every((o) => o instanceof SandboxTimeoutError || o instanceof SandboxUnavailableError));
      assert.equal((await script.call("order-2", { waitLimitMs: 300 })).value, "order-2");
    } finally {
      await sandbox.close();
    }
  });

  test("another script on the same worker takes its turn between the flood's calls: it waits one of them, not all", async () => {
    const sandbox = await createSandbox({ workers: 1 });
    try {
      const flooded = await sandbox.compile("function main() { while (true) {} }", { timeLimitMs: 50 });
      const other = await sandbox.compile("function main(input) { return input }", { timeLimitMs: 50 });
      // 40 runaway calls: two seconds of the worker, first come first served.
      const flood = Array.from({ length: 40 }, () => flooded.call(null).catch((e: Error) => e));
      const waited: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        assert.equal((await other.call(`order-${i}`)).value, `order-${i}`);
        waited.push(Math.round(performance.now() - started));
      }
      // Each waited for the runaway call in progress (50 ms) and its own; without turns, for the whole flood.
      assert.ok(
        waited.every((ms) => ms < 1_000),
        `waited ${waited.join(", ")} ms behind a flood of 2,000 ms`,
      );
      await Promise.all(flood);
    } finally {
      await sandbox.close();
    }
  });
});
