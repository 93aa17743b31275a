import assert from "node:assert/strict";
import { test } from "node:test";
import { Histogram, Registry } from "prom-client";
import { BoundHistogram } from "../src/bound-histogram.js";

const buckets = [0.001, 0.01, 0.1, 1];
const observations: Array<[string, number]> = [
  ["prod", 0.0004],
  ["prod", 0.001],
  ["sit", 0.05],
  ["prod", 0.0011],
  ["sit", 7],
  ["prod", 1],
];

/** The same observations through prom-client's own histogram and through BoundHistogram, each in its registry. */
async function expositions(): Promise<{ own: string; bound: string; boundRegistry: Registry }> {
  const ownRegistry = new Registry();
  const boundRegistry = new Registry();
  for (const r of [ownRegistry, boundRegistry]) r.setDefaultLabels({ service: "svc" });
  const own = new Histogram({ name: "t_seconds", help: "help text", labelNames: ["target"], buckets, registers: [ownRegistry] });
  const bound = new BoundHistogram({ name: "t_seconds", help: "help text", labelNames: ["target"], buckets, registers: [boundRegistry] });
  for (const [target, v] of observations) {
    own.observe({ target }, v);
    bound.bind({ target })(v);
  }
  return { own: await ownRegistry.metrics(), bound: await boundRegistry.metrics(), boundRegistry };
}

test("a bound histogram is exposed line for line as prom-client's own (buckets cumulative, +Inf, sum, count, default labels)", async () => {
  const { own, bound } = await expositions();
  assert.equal(bound, own);
  // A value on a bound counts in that bucket (le is "less than or equal"), one over every bound only in +Inf.
  assert.match(bound, /t_seconds_bucket\{le="0.001",service="svc",target="prod"\} 2\n/);
  assert.match(bound, /t_seconds_bucket\{le="1",service="svc",target="sit"\} 1\n/);
  assert.match(bound, /t_seconds_bucket\{le="\+Inf",service="svc",target="sit"\} 2\n/);
});

test("resetting the registry zeroes a bound histogram, and observers bound before go on counting", async () => {
  const registry = new Registry();
  const h = new BoundHistogram({ name: "r_seconds", help: "help", labelNames: ["target"], buckets: [1], registers: [registry] });
  const observe = h.bind({ target: "a" });
  observe(0.5);
  registry.resetMetrics();
  observe(2);
  const text = await registry.metrics();
  assert.match(text, /r_seconds_bucket\{le="1",target="a"\} 0\n/);
  assert.match(text, /r_seconds_count\{target="a"\} 1\n/);
  assert.match(text, /r_seconds_sum\{target="a"\} 2\n/);
});

test("a value that is not a finite number is not observed: the sum and the buckets stay true", async () => {
  const registry = new Registry();
  const observe = new BoundHistogram({ name: "n_seconds", help: "help", labelNames: ["target"], buckets: [1], registers: [registry] }).bind(
    {
      target: "a",
    },
  );
  observe(0.5);
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) observe(bad);
  const text = await registry.metrics();
  assert.match(text, /n_seconds_bucket\{le="1",target="a"\} 1\n/);
  assert.match(text, /n_seconds_sum\{target="a"\} 0.5\n/);
  assert.match(text, /n_seconds_count\{target="a"\} 1\n/);
});
