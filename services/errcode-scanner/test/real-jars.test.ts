// Real, widely used libraries from Debian (apt packages libderby-java, libh2-java, libhsqldb-java,
// libpostgresql-jdbc-java): the codes the scanner finds are compared with ground truth computed
// from javap output alone (test/support/javap-truth.ts). Each scan runs bounded, as the service's
// do: Derby's self-calling factory used to exhaust any heap.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { extractBounded } from "../src/scan/isolated-extract.js";
import { installed, realJars, score, truthFor } from "./support/real-jars.js";

const bounds = { maxHeapMb: 1024, timeLimitMs: 180_000 };

describe("real jars against javap ground truth", () => {
  for (const jar of realJars)
    test(`${jar.name}: code recall ≥ 0.95 and precision ≥ 0.98, within bounded memory and time`, {
      skip: installed(jar) ? false : `${jar.jar} is not installed (apt-get install ${jar.apt})`,
    }, async () => {
      const truth = truthFor(jar);
      assert.ok(truth.codes.size >= 30, `javap gave only ${truth.codes.size} codes`);
      const r = await extractBounded(jar.jar, { bases: [jar.base] }, {}, bounds);
      assert.deepEqual(r.problems, []);
      const s = score(
        truth,
        r.errorCodes.map((e) => e.code),
      );
      const why = `${jar.name}: ${JSON.stringify({ ...s, missed: s.missed.slice(0, 20), extra: s.extra.slice(0, 20) })}`;
      assert.ok(s.recall >= 0.95, why);
      assert.ok(s.precision >= 0.98, why);
    });
});
