import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { freePort } from "./free-port.js";
import { eventually } from "./poll.js";

const START_DEADLINE_MS = 60_000;

export interface ReadyzReply {
  status: number;
  body: { checks?: Record<string, string>; failing?: string[] };
}

/** A service running from its build in a process of its own, as `make run` starts it. */
export interface ServiceProcess {
  url: string;
  readyz(): Promise<ReadyzReply>;
  /** Waits until /readyz answers 200 (its dependencies, the bus included, are reachable). */
  ready(): Promise<void>;
  /** SIGTERM, then waits for the exit: the service's own shutdown runs. */
  stop(): Promise<void>;
}

/**
 * Starts `node <main>` on a free port of 127.0.0.1 with this process's environment and `env`,
 * and resolves once it answers /healthz. A process that exits first fails the start with
 * its output, so a bad configuration shows up as the reason, not as a timeout.
 */
export async function startServiceProcess(main: string, env: Record<string, string>): Promise<ServiceProcess> {
  const port = await freePort();
  const proc: ChildProcess = spawn(process.execPath, [main], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  proc.stdout?.on("data", (d) => (output += d));
  proc.stderr?.on("data", (d) => (output += d));
  const exited = () => {
    if (proc.exitCode !== null) throw new Error(`${main} exited with ${proc.exitCode}:\n${output}`);
  };
  const url = `http://127.0.0.1:${port}`;
  const readyz = async (): Promise<ReadyzReply> => {
    const res = await fetch(`${url}/readyz`);
    return { status: res.status, body: (await res.json()) as ReadyzReply["body"] };
  };
  const service: ServiceProcess = {
    url,
    readyz,
    ready: async () => {
      await eventually(
        `${main} to be ready`,
        async () => {
          exited();
          return (await readyz()).status === 200;
        },
        START_DEADLINE_MS,
        100,
      );
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = once(proc, "exit");
      proc.kill("SIGTERM");
      await gone;
    },
  };
  try {
    await eventually(
      `${main} to listen`,
      async () => {
        exited();
        return (await fetch(`${url}/healthz`)).ok;
      },
      START_DEADLINE_MS,
      100,
    );
  } catch (err) {
    await service.stop();
    throw err;
  }
  return service;
}
