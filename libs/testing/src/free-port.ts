import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * The first port the kernel hands to `listen(0)` (Linux's ip_local_port_range). A port chosen below it
 * stays free until the test binds it: a port the kernel chose, once released, could go to the next
 * `listen(0)` of a process in the other test file running meanwhile (an app starting on it then found
 * that process's service answering in its place).
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const high = ephemeralLow() - 1;
const low = Math.max(1_024, high - 16_000);

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A TCP port nobody listens on right now, outside the range the kernel picks ports from. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port found between ${low} and ${high}`);
}
