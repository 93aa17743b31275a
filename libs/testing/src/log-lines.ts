import { Writable } from "node:stream";

/** A logger's destination whose JSON lines a test reads, parsed, as they are written. */
export function logLines<Line = { level: number; msg: string } & Record<string, unknown>>(): { destination: Writable; lines: Line[] } {
  const lines: Line[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Line);
      done();
    },
  });
  return { destination, lines };
}
