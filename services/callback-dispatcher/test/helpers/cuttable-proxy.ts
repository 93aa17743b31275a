import net from "node:net";

/**
 * A TCP proxy in front of a shared server (Redis) that a test can cut without touching the server
 * itself. Cut, it behaves like a network partition: connections stay open (new ones are accepted)
 * but nothing gets through and nothing answers, the case where a client without deadlines hangs.
 */
export async function startCuttableProxy(targetHost: string, targetPort: number) {
  let cut = false;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    if (cut) return; // accepted and silent: a blackhole
    const upstream = net.connect(targetPort, targetHost);
    track(upstream);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("data", (chunk) => {
      if (!cut) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!cut) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    /** From now on nothing passes, in either direction, on existing or new connections. */
    cut() {
      cut = true;
    },
    /** Heals the partition: the connections open across it are reset (as after a real one), new ones pass. */
    heal() {
      cut = false;
      dropAll();
    },
    async close() {
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
