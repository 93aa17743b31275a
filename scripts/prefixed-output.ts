// The launcher's output: each process's lines behind its name, the services' JSON log lines
// made readable with pino-pretty.
import { createInterface } from "node:readline";
import { prettyFactory } from "pino-pretty";

const pretty = prettyFactory({
  colorize: process.stdout.isTTY,
  singleLine: true,
  ignore: "pid,hostname,service",
  translateTime: "HH:MM:ss.l",
});

/** Writes each line of `stream` to `out` behind `tag` (the process's name, padded to a column). */
export function prefixLines(tag: string, stream: NodeJS.ReadableStream, out: NodeJS.WriteStream): void {
  createInterface({ input: stream }).on("line", (line) => {
    let text = line;
    if (line.startsWith("{")) {
      try {
        text = pretty(line).trimEnd();
      } catch {}
    }
    out.write(`${tag} | ${text}\n`);
  });
}
