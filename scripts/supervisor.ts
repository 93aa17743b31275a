// How `make run` keeps its processes up, as a process supervisor does: a process that dies is
// reported with its exit code or signal and started again after a pause that doubles with each
// death in a row (1 s, 2 s, 4 s … at most 30 s) and is back to 1 s once a run lasted a minute.
// A process that dies before it was ready the first time is not restarted: that is a broken
// start, and the launcher stops with its reason.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
/** A run this long was healthy: the next death waits the first delay again. */
const HEALTHY_AFTER_MS = 60_000;
/** stop() sends SIGTERM, then SIGKILL after this (the services drain within their own 10 s). */
const STOP_DEADLINE_MS = 15_000;

export interface ProcessSpec {
  /** Printed before its lines and in what the supervisor says about it. */
  name: string;
  /** Arguments to this launcher's node binary. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Helpers read their stdin to stop when the launcher is gone. */
  stdin: "pipe" | "ignore";
  /** Takes a new process's output; resolves true once it serves, false when it exits first. */
  watch(child: ChildProcess): Promise<boolean>;
  /** Said when it died, after the restart delay (what the others do meanwhile). */
  meanwhile?: string;
}

export const hasExited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

const exitReason = (code: number | null, signal: NodeJS.Signals | null) => (signal ? `signal ${signal}` : `code ${code}`);

export class Supervised {
  private child?: ChildProcess;
  private everReady = false;
  private deathsInRow = 0;
  private restartTimer?: NodeJS.Timeout;
  private stopping = false;

  constructor(
    readonly spec: ProcessSpec,
    private readonly say: (line: string) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts it and resolves once it is ready; rejects when it exits before. */
  async start(): Promise<void> {
    const child = this.spawn();
    if (!(await this.spec.watch(child))) {
      throw new Error(`${this.spec.name} exited (${exitReason(child.exitCode, child.signalCode)}) before it was ready`);
    }
    this.everReady = true;
  }

  /** SIGTERM, SIGKILL after the deadline; no restart after this. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || hasExited(child)) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_DEADLINE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** For the launcher's own exit: nothing may outlive it. */
  kill(): void {
    this.stopping = true;
    this.child?.kill("SIGKILL");
  }

  private spawn(): ChildProcess {
    const { spec } = this;
    // Own process group: the terminal's Ctrl-C reaches only the launcher, which then sends each
    // process exactly one SIGTERM (a second signal would cut a service's drain short).
    const child = spawn(process.execPath, spec.args, { env: spec.env, stdio: [spec.stdin, "pipe", "pipe"], detached: true });
    const startedAt = Date.now();
    child.once("exit", (code, signal) => this.exited(child, Date.now() - startedAt, exitReason(code, signal)));
    this.child = child;
    return child;
  }

  private exited(child: ChildProcess, upMs: number, reason: string): void {
    // What it left running in its group goes with it: a helper killed on its own leaves its
    // server behind, holding the port and the data directory its restart needs.
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {}
    if (this.stopping || !this.everReady) return;
    if (upMs >= HEALTHY_AFTER_MS) this.deathsInRow = 0;
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.deathsInRow++);
    const meanwhile = this.spec.meanwhile ? `; ${this.spec.meanwhile}` : "";
    this.say(`${this.spec.name} died (${reason}) after ${Math.round(upMs / 1000)} s up; restarting it in ${delay / 1000} s${meanwhile}`);
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    const child = this.spawn();
    this.say(`${this.spec.name} restarted (pid ${child.pid})`);
    try {
      if ((await this.spec.watch(child)) && !this.stopping) this.say(`${this.spec.name} is ready again`);
    } catch (err) {
      this.say(`${this.spec.name} is running but not ready: ${(err as Error).message}`);
    }
  }
}
