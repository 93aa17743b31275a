import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { extractErrorCodes } from "../src/scan/engine.js";
import { psqlStates } from "./support/real-jars.js";

// Debian's libpostgresql-jdbc-java: a real jar nobody here wrote.
const JAR = "/usr/share/java/postgresql.jar";
const BASE = "org.postgresql.util.PSQLException";

/**
 * Per class and method name, the PSQLState constants its bytecode reads (javap -c), directly
 * or through the static methods it calls (factories such as `cannotCastException`).
 */
function psqlStateReads(classes: string[]): Map<string, Set<string>> {
  const out = execFileSync("javap", ["-c", "-p", "-cp", JAR, ...classes], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  const reads = new Map<string, Set<string>>();
  const calls = new Map<string, Set<string>>();
  let cls = "";
  let method = "";
  for (const line of out.split("\n")) {
    const c = /^(?:[\w\s]*\s)?(?:class|interface|enum)\s+([\w.$]+)/.exec(line);
    if (c && !line.startsWith(" ")) cls = c[1];
    const m =
      /^ {2}\S.*?([\w$<>]+)\(.*\)(?: throws [\w.$, ]+)?;$/.exec(line) ?? (/^ {2}static \{\};$/.test(line) ? [line, "<clinit>"] : null);
    if (m) method = m[1] === cls.split(".").pop() ? "<init>" : m[1];
    const g = /getstatic\s+#\d+\s+\/\/ Field org\/postgresql\/util\/PSQLState\.(\w+)/.exec(line);
    if (g) {
      const key = `${cls}#${method}`;
      reads.set(key, (reads.get(key) ?? new Set()).add(g[1]));
    }
    const call = /invokestatic\s+#\d+\s+\/\/ Method (?:([\w/$]+)\.)?([\w$<>]+):/.exec(line);
    if (call) {
      const key = `${cls}#${method}`;
      calls.set(key, (calls.get(key) ?? new Set()).add(`${call[1] ? call[1].replace(/\//g, ".") : cls}#${call[2]}`));
    }
  }
  const through = (key: string, depth: number): Set<string> => {
    const all = new Set(reads.get(key));
    if (depth > 0) for (const callee of calls.get(key) ?? []) for (const n of through(callee, depth - 1)) all.add(n);
    return all;
  };
  return new Map([...new Set([...reads.keys(), ...calls.keys()])].map((k) => [k, through(k, 3)]));
}

describe("a real jar: Debian's PostgreSQL JDBC driver", {
  skip: existsSync(JAR) ? false : `${JAR} is not installed (apt-get install libpostgresql-jdbc-java)`,
}, () => {
  test("every SQLSTATE found is one of PSQLState's, and every site reads that very constant (checked with javap)", async () => {
    const r = await extractErrorCodes(JAR, { bases: [BASE] });
    const states = psqlStates(JAR);
    assert.ok(states.size > 30, `javap gave ${states.size} PSQLState constants`);
    const stateValues = new Set(states.values());
    assert.equal(r.problems.length, 0);
    assert.ok(r.errorCodes.length > 0);
    for (const e of r.errorCodes) assert.ok(stateValues.has(e.code), `${e.code} is not a PSQLState SQLSTATE`);

    const reads = psqlStateReads([...new Set(r.errorCodes.flatMap((e) => e.locations.map((l) => l.class)))]);
    let checked = 0;
    for (const e of r.errorCodes)
      for (const l of e.locations) {
        const names = reads.get(`${l.class}#${l.method.split("(")[0]}`) ?? new Set();
        assert.ok(
          [...names].some((n) => states.get(n) === e.code),
          `${l.class}.${l.method}:${l.line} does not read a PSQLState with SQLSTATE ${JSON.stringify(e.code)}`,
        );
        checked++;
      }
    // Figures of the Debian package this was written against (42.5.5); other versions differ.
    const distinct = new Set(r.errorCodes.map((e) => e.code));
    assert.ok(checked >= 300, `only ${checked} locations`);
    assert.ok(distinct.size >= 30, `only ${distinct.size} codes`);
    assert.ok(r.dynamicSites.length < 20);
  });
});
