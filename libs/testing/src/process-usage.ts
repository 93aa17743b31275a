import { readFile } from "node:fs/promises";

export interface ProcessUsage {
  threads: number;
  rssBytes: number;
}

/** Threads and resident memory of a live process, from /proc (Linux). */
export async function processUsage(pid: number): Promise<ProcessUsage> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(match[1]);
  };
  return { threads: field("Threads"), rssBytes: field("VmRSS") * 1024 };
}
