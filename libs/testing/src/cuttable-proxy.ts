import net from "node:net";

export interface CuttableProxy {
  /** Where clients connect instead of the target (127.0.0.1). */
  port: number;
  /** A partition: from now on nothing passes either way, on open or new connections, and nothing answers. */
  blackhole(): void;
  /** Resets every open connection, as a failover or a restarted peer does; new ones pass unless blackholed. */
  dropConnections(): void;
  /**
   * The connections open now go silent for good, never reset (a NAT or firewall entry gone, a vanished
   * host: the client's kernel retransmits for many minutes); new ones pass.
   */
  silenceOpenConnections(): void;
  /** Ends the partition: new connections pass, and those opened across it are reset (as after a real one). */
  heal(): void;
  /** New connections pass again; those open now stay silent for good, never reset (a hung middlebox's). */
  admitNewConnections(): void;
  /** How many client connections it has accepted so far. */
  accepted(): number;
  /** A slow peer: from now on every answer arrives `ms` later (0: at once again), in order while `ms` stays the same. */
  delayAnswers(ms: number): void;
  /** A peer out of step: from now on each chunk of answer bytes is passed through `rewrite` (undefined: as it came). */
  rewriteAnswers(rewrite: ((chunk: Buffer) => Buffer) | undefined): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a shared server (PostgreSQL, Redis) that a test can cut without touching
 * the server itself, which other tests are using. It listens on `listenPort` when given (a server
 * coming up where clients have been knocking), else on a port the kernel picks.
 */
export async function startCuttableProxy(targetHost: string, targetPort: number, listenPort = 0): Promise<CuttableProxy> {
  let blackholed = false;
  let answerDelayMs = 0;
  let rewriteAnswer: ((chunk: Buffer) => Buffer) | undefined;
  const sockets = new Set<net.Socket>();
  const silenced = new WeakSet<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
  };
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    track(client);
    if (blackholed) return; // accepted and silent
    const upstream = net.connect(targetPort, targetHost);
    track(upstream);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("data", (chunk) => {
      if (!blackholed && !silenced.has(client)) upstream.write(chunk);
    });
    upstream.on("data", (received: Buffer) => {
      if (blackholed || silenced.has(client)) return;
      const chunk = rewriteAnswer ? rewriteAnswer(received) : received;
      // Timers of one delay fire in the order they were set: the answers keep theirs.
      if (answerDelayMs) setTimeout(() => blackholed || silenced.has(client) || client.write(chunk), answerDelayMs);
      else client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(listenPort, "127.0.0.1", resolve));
  const dropConnections = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    blackhole: () => {
      blackholed = true;
    },
    dropConnections,
    silenceOpenConnections: () => {
      for (const s of sockets) silenced.add(s);
    },
    heal: () => {
      blackholed = false;
      dropConnections();
    },
    accepted: () => accepted,
    admitNewConnections: () => {
      for (const s of sockets) silenced.add(s);
      blackholed = false;
    },
    delayAnswers: (ms) => {
      answerDelayMs = ms;
    },
    rewriteAnswers: (rewrite) => {
      rewriteAnswer = rewrite;
    },
    close: async () => {
      // Listening stops first: a connection a client opened between the drop and the close (a pool
      // reconnecting) would otherwise hold server.close() for ever.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      dropConnections();
      await closed;
    },
  };
}

/**
 * A proxy in front of the server `url` names (a `postgres://` or `redis://` URL), and the same URL
 * pointing at the proxy: a client given `url` can then be cut off while the server serves others.
 */
export async function proxiedUrl(url: string, defaultPort: number): Promise<{ proxy: CuttableProxy; url: string }> {
  const target = new URL(url);
  const proxy = await startCuttableProxy(target.hostname, Number(target.port || defaultPort));
  const via = new URL(url);
  via.hostname = "127.0.0.1";
  via.port = String(proxy.port);
  return { proxy, url: via.toString() };
}
