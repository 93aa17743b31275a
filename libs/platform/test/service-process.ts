import { type ChildProcess, spawn } from "node:child_process";
import { eventually, freePort } from "@opsplane/testing";
import { mainOf } from "../../../scripts/services.js";

/**
 * A service's built main run as its own process on a free port, with `env` (DATABASE_URL at least), until
 * ready; everything it writes (stdout and stderr) is collected. The caller kills it (`child.kill`).
 */
export async function startServiceProcess(name: string, env: Record<string, string>) {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [mainOf(name)], {
    env: { PATH: process.env.PATH, PORT: String(port), HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  try {
    await eventually(`${name} ready`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 30_000, 100);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return { port, child, log: () => output };
}
