import type { FastifyRequest } from "fastify";
import ipaddr from "ipaddr.js";

/**
 * The address a request comes from, for rate limits and refusal records. `X-Forwarded-For` is
 * believed only from the proxies in `TRUSTED_PROXIES`: walking it from the right, the first hop
 * that is not a trusted proxy is the client. From anyone else the header is ignored, so a caller
 * cannot pick the address their failures are counted against.
 */
export function clientAddresses(trustedProxies: string): (req: FastifyRequest) => string {
  const ranges = trustedProxies
    .split(",")
    .map((cidr) => cidr.trim())
    .filter(Boolean)
    .map((cidr) => {
      const [address, bits] = ipaddr.parseCIDR(cidr);
      return { address, bits };
    });
  const trusted = (text: string) => {
    if (!ipaddr.isValid(text)) return false;
    const address = ipaddr.process(text);
    return ranges.some((r) => r.address.kind() === address.kind() && address.match(r.address, r.bits));
  };
  return (req) => {
    const peer = req.socket.remoteAddress ?? "unknown";
    if (!ranges.length || !trusted(peer)) return normalised(peer);
    const header = req.headers["x-forwarded-for"];
    const hops = (Array.isArray(header) ? header.join(",") : (header ?? ""))
      .split(",")
      .map((h) => h.trim())
      .filter(Boolean);
    let client = peer;
    while (hops.length && trusted(client)) client = hops.pop()!;
    return normalised(client);
  };
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one client. */
const normalised = (text: string) => (ipaddr.isValid(text) ? ipaddr.process(text).toString() : text);
