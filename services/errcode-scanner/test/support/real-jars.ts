// Real jars from Debian packages and how each library passes its error codes, for the real-jar
// test and bench/errcode.ts. Ground truth comes from javap (javap-truth.ts), never from
// the scanner; recall and precision compare the scanner's distinct codes with it.
import { execFileSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { type CodeApi, disassemble, type Truth, truthOf } from "./javap-truth.js";

export interface RealJar {
  name: string;
  /** Debian package that installs it. */
  apt: string;
  jar: string;
  base: string;
  api: CodeApi[];
  /** Values of static fields read with getstatic (enum constants carrying a code). */
  fields?(jar: string): (owner: string, name: string) => string | undefined;
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const num = (v: unknown) => (typeof v === "number" ? String(v) : undefined);
/** HSQLDB's Error.error(t, code, subCode, add): a subCode of 11 or more replaces the code; the exception holds it negated. */
const hsqlSub = ([code, sub]: unknown[]) =>
  typeof code === "number" && typeof sub === "number" ? String(-(sub < 11 ? code : sub)) : undefined;
const hsqlNeg = ([code]: unknown[]) => (typeof code === "number" ? String(-code) : undefined);

export const realJars: RealJar[] = [
  {
    name: "derby",
    apt: "libderby-java",
    jar: "/usr/share/java/derby.jar",
    base: "org.apache.derby.iapi.error.StandardException",
    // The message id (SQLState constant, e.g. "42X01" or "XJ001.U") is the first argument.
    api: [
      {
        owner: "org/apache/derby/iapi/error/StandardException",
        name: /^(newException|newPreLocalizedException)$/,
        desc: /^\(Ljava\/lang\/String;/,
        args: [0],
        code: ([v]) => str(v),
      },
      {
        owner: "org/apache/derby/iapi/error/StandardException",
        name: "<init>",
        desc: /^\(Ljava\/lang\/String;/,
        args: [0],
        code: ([v]) => str(v),
      },
    ],
  },
  {
    name: "h2",
    apt: "libh2-java",
    jar: "/usr/share/java/h2.jar",
    base: "org.h2.message.DbException",
    // ErrorCode ints (42102 "table not found") go to DbException.get(...) and friends, first.
    api: [
      {
        owner: "org/h2/message/DbException",
        name: /^get/,
        desc: /^\(I.*\)Lorg\/h2\/message\/DbException;$/,
        args: [0],
        code: ([v]) => num(v),
      },
    ],
  },
  {
    name: "hsqldb",
    apt: "libhsqldb-java",
    jar: "/usr/share/java/hsqldb.jar",
    base: "org.hsqldb.HsqlException",
    // ErrorCode ints go to Error.error(...)/parseError(...); the exception's code is their negation.
    api: [
      { owner: "org/hsqldb/error/Error", name: /^(error|parseError)$/, desc: /^\(I/, args: [0], code: hsqlNeg },
      {
        owner: "org/hsqldb/error/Error",
        name: "error",
        desc: /^\(Ljava\/lang\/Throwable;ILjava\/lang\/String;\)/,
        args: [1],
        code: hsqlNeg,
      },
      { owner: "org/hsqldb/error/Error", name: "error", desc: /^\(Ljava\/lang\/Throwable;II\[/, args: [1, 2], code: hsqlSub },
      { owner: "org/hsqldb/error/Error", name: "parseError", desc: /^\(III\[/, args: [0, 1], code: hsqlSub },
      {
        owner: "org/hsqldb/HsqlException",
        name: "<init>",
        desc: /^\(Ljava\/lang\/Throwable;Ljava\/lang\/String;Ljava\/lang\/String;I\)/,
        args: [3],
        code: ([v]) => num(v),
      },
      {
        owner: "org/hsqldb/HsqlException",
        name: "<init>",
        desc: /^\(Ljava\/lang\/Throwable;Ljava\/lang\/String;I\)/,
        args: [2],
        code: ([v]) => num(v),
      },
    ],
  },
  {
    name: "postgresql",
    apt: "libpostgresql-jdbc-java",
    jar: "/usr/share/java/postgresql.jar",
    base: "org.postgresql.util.PSQLException",
    // A PSQLState enum constant, second argument; its SQLSTATE is the code.
    api: [
      {
        owner: "org/postgresql/util/PSQLException",
        name: "<init>",
        desc: /^\(Ljava\/lang\/String;Lorg\/postgresql\/util\/PSQLState;/,
        args: [1],
        code: ([v]) => str(v),
      },
    ],
    fields: (jar) => {
      const states = psqlStates(jar);
      return (owner, name) => (owner === "org/postgresql/util/PSQLState" ? states.get(name) : undefined);
    },
  },
];

/** PSQLState constant → SQLSTATE, read by javap from the enum's static initializer. */
export function psqlStates(jar: string): Map<string, string> {
  const out = execFileSync("javap", ["-c", "-p", "-cp", jar, "org.postgresql.util.PSQLState"], { encoding: "utf8" });
  const clinit = out.slice(out.indexOf("static {};"));
  const states = new Map<string, string>();
  const block =
    /new\s+#\d+\s+\/\/ class org\/postgresql\/util\/PSQLState\s+\d+: dup\s+\d+: ldc(?:_w)?\s+#\d+\s+\/\/ String (\w+)\s+\d+: (?:iconst_\d|bipush\s+\d+|sipush\s+\d+)\s+\d+: ldc(?:_w)?\s+#\d+\s+\/\/ String ?(\S*)/g;
  for (const m of clinit.matchAll(block)) states.set(m[1], m[2]);
  return states;
}

export const installed = (j: RealJar) => existsSync(j.jar);

/** The jar's ground truth from javap. */
export function truthFor(j: RealJar): Truth {
  const jar = realpathSync(j.jar);
  return truthOf(disassemble(jar), j.api, j.fields?.(jar));
}

export interface Score {
  truth: number;
  found: number;
  recall: number;
  precision: number;
  missed: string[];
  extra: string[];
}

/** Recall and precision of the distinct codes found against the truth. */
export function score(truth: Truth, found: Iterable<string>): Score {
  const got = new Set(found);
  const hit = [...got].filter((c) => truth.codes.has(c)).length;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    truth: truth.codes.size,
    found: got.size,
    recall: round(truth.codes.size ? hit / truth.codes.size : 1),
    precision: round(got.size ? hit / got.size : 1),
    missed: [...truth.codes].filter((c) => !got.has(c)).sort(),
    extra: [...got].filter((c) => !truth.codes.has(c)).sort(),
  };
}
