import net from "node:net";

/** What an environment may answer a callback with a protocol switch: without an Upgrade header, then with one. */
const switchingAnswers = [
  "HTTP/1.1 101 Switching Protocols\r\n\r\n",
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
];

/**
 * An environment answering each request `101 Switching Protocols`, in turn without and with an
 * `Upgrade` header (undici failed on an assertion of its own on the first, and said "bad upgrade" of
 * the second). `answers` is how many kinds there are.
 */
export async function startSwitchingEnvironment() {
  let next = 0;
  const server = net.createServer((socket) => socket.once("data", () => socket.write(switchingAnswers[next++ % switchingAnswers.length]!)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    answers: switchingAnswers.length,
    close: () => server.close(),
  };
}
